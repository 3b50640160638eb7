using System.Globalization;

namespace ServeSharp.Handlers.Segmentation;

/// <summary>
/// Python's <c>repr</c> of a float32 widened to double (what <c>json.dumps(tensor.tolist())</c> writes): the
/// shortest decimal that reads back as that double, the nearest such when several are equally short.
/// Probabilities of a softmax over at most 255 classes lie in [1/255, 1]; for those this is exact integer
/// arithmetic on the float's 24-bit significand (three 64×64→128-bit multiplies, no digit-by-digit search),
/// several times faster than general double formatting. Anything else takes .NET's shortest round-trip path.
/// </summary>
internal static class PythonFloat
{
    // 10^0 .. 10^19, the largest power of ten below 2^64.
    private static readonly ulong[] Pow10 = PowersOfTen(20);

    // "00" "01" ... "99": two digits per table read when writing.
    private static readonly byte[] DigitPairs = Pairs();

    /// <summary>Writes the text into <paramref name="destination"/> (at least 32 bytes) and returns its length.</summary>
    public static int Format(float value, Span<byte> destination)
    {
        var bits = BitConverter.SingleToUInt32Bits(value);
        var biased = (int)(bits >> 23);
        // Positive, normal, and in [2^-8, 1]: biased exponent 119..126, or exactly 1.0.
        if (biased is < 119 or > 127 || (biased == 127 && (bits & 0x7FFFFF) != 0)) return General(value, destination);

        // value = m · 2^(biased − 150) exactly. In units of 2^-s (s = 181 − biased, 54..62), value = m·2^31 and the
        // double's rounding interval reaches 2 units up and 2 down (1 down when m is a power of two: the double below
        // is closer). The significand is even, so a decimal exactly on a boundary still reads back as this double.
        var m = (ulong)(bits & 0x7FFFFF | 0x800000);
        var s = 181 - biased;
        var x = m << 31; // < 2^55
        ulong below = m == 0x800000 ? 1UL : 2UL, above = 2;

        // p decimals give the value 17 significant digits (0.1 ≤ value < 1 → 17; 0.01 → 18; 0.001 → 19; 1.0 → 16).
        // (compared as doubles: 0.01f is a little below 0.01). x·10^p < 2^55·10^19 fits in 128 bits, and the value
        // times 10^p (below 10^19) in 64: one multiply each, shifted down by s.
        var d = (double)value;
        var p = d >= 1 ? 16 : d >= 0.1 ? 17 : d >= 0.01 ? 18 : 19;
        var scale = Pow10[p];
        var fractionMask = (1UL << s) - 1;
        var exactHigh = Math.BigMul(x, scale, out var exactLow);
        var exact = ShiftDown(exactHigh, exactLow, s); // floor(value · 10^p)
        var exactFraction = exactLow & fractionMask;
        var highHigh = Math.BigMul(x + above, scale, out var highLow);
        var hi = ShiftDown(highHigh, highLow, s);
        var lowHigh = Math.BigMul(x - below, scale, out var lowLow);
        var lo = ShiftDown(lowHigh, lowLow, s) + ((lowLow & fractionMask) != 0 ? 1UL : 0UL); // rounded up

        // Drop trailing digits while the interval still holds a multiple of the coarser unit.
        var t = 0;
        while (hi / 10 >= (lo + 9) / 10)
        {
            hi /= 10;
            lo = (lo + 9) / 10;
            t++;
        }
        // The nearest multiple of 10^t to the exact value (ties to even), kept inside the interval.
        ulong digits;
        if (t == 0)
        {
            digits = exact;
            var half = 1UL << (s - 1);
            if (exactFraction > half || (exactFraction == half && (digits & 1) == 1)) digits++;
        }
        else
        {
            var step = Pow10[t];
            // Mostly one or two digits go: constant divisors compile to a multiply, a variable one to a slow divide.
            digits = t switch { 1 => exact / 10, 2 => exact / 100, _ => exact / step };
            var rest = exact - digits * step; // with exactFraction / 2^s, the part below the multiple
            var half = step / 2; // 10^t is even
            if (rest > half || (rest == half && (exactFraction != 0 || (digits & 1) == 1))) digits++;
        }
        digits = Math.Clamp(digits, lo, hi);
        return Positional(digits, p - t, destination);
    }

    // (high·2^64 + low) >> s for 0 < s < 64, when the result fits in 64 bits.
    private static ulong ShiftDown(ulong high, ulong low, int s) => (high << (64 - s)) | (low >> s);

    // digits × 10^-decimals (decimals ≥ 0), written as Python writes numbers in [1e-4, 1e16): "0.00123", "1.0".
    private static int Positional(ulong digits, int decimals, Span<byte> destination)
    {
        // The digits right-aligned in a scratch buffer, two at a time.
        Span<byte> text = stackalloc byte[24];
        var start = text.Length;
        var rest = digits;
        while (rest >= 100)
        {
            var pair = (int)(rest % 100) * 2;
            rest /= 100;
            text[--start] = DigitPairs[pair + 1];
            text[--start] = DigitPairs[pair];
        }
        if (rest >= 10)
        {
            var pair = (int)rest * 2;
            text[--start] = DigitPairs[pair + 1];
            text[--start] = DigitPairs[pair];
        }
        else
        {
            text[--start] = (byte)('0' + (int)rest);
        }
        var written = text[start..];
        var n = written.Length;

        var length = 0;
        var integerDigits = n - decimals;
        if (integerDigits <= 0)
        {
            destination[length++] = (byte)'0';
        }
        else
        {
            written[..integerDigits].CopyTo(destination);
            length += integerDigits;
        }
        destination[length++] = (byte)'.';
        if (decimals == 0)
        {
            destination[length++] = (byte)'0';
            return length;
        }
        for (var i = 0; i < -integerDigits; i++) destination[length++] = (byte)'0';
        var fraction = written[Math.Max(0, integerDigits)..];
        fraction.CopyTo(destination[length..]);
        return length + fraction.Length;
    }

    // .NET's shortest round-trip of the double, in Python's spelling (lower-case exponent, ".0" on integers).
    private static int General(float value, Span<byte> destination)
    {
        Span<char> chars = stackalloc char[32];
        ((double)value).TryFormat(chars, out var n, "R", CultureInfo.InvariantCulture);
        var hasDot = chars[..n].IndexOfAny('.', 'E') >= 0;
        for (var i = 0; i < n; i++) destination[i] = (byte)char.ToLowerInvariant(chars[i]);
        if (hasDot) return n;
        destination[n] = (byte)'.';
        destination[n + 1] = (byte)'0';
        return n + 2;
    }

    private static ulong[] PowersOfTen(int count)
    {
        var powers = new ulong[count];
        powers[0] = 1;
        for (var i = 1; i < count; i++) powers[i] = powers[i - 1] * 10;
        return powers;
    }

    private static byte[] Pairs()
    {
        var pairs = new byte[200];
        for (var i = 0; i < 100; i++)
        {
            pairs[2 * i] = (byte)('0' + i / 10);
            pairs[2 * i + 1] = (byte)('0' + i % 10);
        }
        return pairs;
    }
}
