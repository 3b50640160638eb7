// ServeSharp's playground: a thin client of the inference API. It lists models with KServe v1's GET /v1/models
// (TorchServe's inference port has no list) and runs each image twice through POST /predictions/{model}: once for
// the chosen picture (overlay, colour mask or class map), once with output=summary for the legend (names, palette
// colours, areas), so the page holds no copy of the palette or class names. Nothing here is a framework; the
// server sends it with a Content-Security-Policy that allows no inline script or style.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const ui = {
    form: $('form'), model: $('model'), refresh: $('refresh'), token: $('token'), file: $('file'), drop: $('drop'),
    alpha: $('alpha'), scales: $('scales'), flip: $('flip'), crop: $('crop'), stride: $('stride'), run: $('run'),
    status: $('status'), error: $('error'), stage: $('stage'), source: $('source'), result: $('result'),
    after: $('after'), opacity: $('opacity'), download: $('download'), latency: $('latency'),
    legend: document.querySelector('#legend tbody'), note: $('note'), curl: $('curl'),
  };

  let image = null; // the File being segmented and its object URL
  let downloadUrl = null;
  let current = null; // the AbortController of the run in flight: a new run cancels the old one

  // data-state on <body> (starting, ready, busy, done, error) is what scripts and tests wait on.
  function setState(state, text) {
    document.body.dataset.state = state;
    ui.status.textContent = text;
    ui.run.disabled = state === 'busy';
  }

  function showError(text) {
    ui.error.textContent = text;
    ui.error.hidden = false;
    setState('error', 'The request failed.');
  }

  function clearError() {
    ui.error.hidden = true;
    ui.error.textContent = '';
  }

  function authHeaders(extra) {
    const headers = new Headers(extra);
    const token = ui.token.value.trim();
    if (token) headers.set('Authorization', `Bearer ${token}`);
    return headers;
  }

  // The server's own words: TorchServe's {code, type, message}, KServe's {error}, or whatever text came back.
  async function errorText(response) {
    const text = await response.text();
    try {
      const body = JSON.parse(text);
      if (body && typeof body.message === 'string') return `${response.status} ${body.type ?? ''}: ${body.message}`;
      if (body && typeof body.error === 'string') return `${response.status}: ${body.error}`;
    } catch {
      // not JSON: fall through to the raw text
    }
    return `${response.status} ${response.statusText}: ${text.slice(0, 500)}`;
  }

  async function listModels() {
    clearError();
    setState('busy', 'Loading the model list…');
    let response;
    try {
      response = await fetch('v1/models', { headers: authHeaders() });
    } catch (e) {
      showError(`The server did not answer: ${e.message}`);
      return;
    }
    if (!response.ok) {
      // A refused key is TorchServe's 400 (0.12+) or 401 (before): either way the user has a field to type it in.
      const text = await errorText(response);
      showError(text.includes('Token Authorization failed') ? `${text}\nType the inference key above.` : text);
      return;
    }
    const { models } = await response.json();
    const previous = ui.model.value;
    ui.model.replaceChildren(...models.map((name) => new Option(name, name, false, name === previous)));
    if (models.length === 0) {
      showError('No model is registered: register one through the management API (POST /models?url=...).');
      return;
    }
    setState('ready', image ? 'Ready.' : 'Ready: drop an image or choose one.');
  }

  function chosenOutput() {
    return ui.form.querySelector('input[name="output"]:checked').value;
  }

  // The query the handler reads (README "Using it"): empty fields are left to the model's own defaults.
  function parameters(output) {
    const query = new URLSearchParams({ output });
    if (output === 'overlay') query.set('alpha', ui.alpha.value);
    if (ui.scales.value.trim()) query.set('scales', ui.scales.value.trim());
    if (ui.flip.checked) query.set('flip', 'true');
    if (ui.crop.value.trim()) query.set('crop_size', ui.crop.value.trim());
    if (ui.stride.value.trim()) query.set('stride', ui.stride.value.trim());
    return query;
  }

  async function predict(model, query, signal) {
    const started = performance.now();
    const response = await fetch(`predictions/${encodeURIComponent(model)}?${query}`, {
      method: 'POST',
      headers: authHeaders({ 'Content-Type': image.file.type || 'application/octet-stream' }),
      body: image.file,
      signal,
    });
    if (!response.ok) throw new Error(await errorText(response));
    const blob = await response.blob();
    return { blob, type: response.headers.get('Content-Type') ?? '', ms: performance.now() - started };
  }

  async function run() {
    clearError();
    if (!image) return showError('Choose an image first.');
    const model = ui.model.value;
    if (!model) return showError('No model is selected: reload the model list.');
    current?.abort();
    const controller = new AbortController();
    current = controller;
    const output = chosenOutput();
    // The previous answer goes while this one is made, so an error is never shown beside a stale picture.
    ui.result.hidden = true;
    ui.after.hidden = true;
    setState('busy', `Segmenting with ${model}…`);
    try {
      const picture = await predict(model, parameters(output), controller.signal);
      if (!picture.type.startsWith('image/')) {
        throw new Error(`${model} answered ${picture.type || 'no content type'}, not an image: ${(await picture.blob.text()).slice(0, 300)}`);
      }
      const summary = await predict(model, parameters('summary'), controller.signal);
      if (controller !== current) return;
      if (!summary.type.includes('json')) throw new Error(`${model} answered output=summary with ${summary.type}: the legend needs image_segmenter's summary`);
      await draw(picture.blob, output);
      legend(JSON.parse(await summary.blob.text()), output);
      ui.latency.textContent = `${output}: ${Math.round(picture.ms)} ms · summary: ${Math.round(summary.ms)} ms ` +
        '(round trips from this browser; the model ran once for each)';
      ui.curl.textContent = curlCommand(model, parameters(output), output);
      ui.after.hidden = false;
      setState('done', `Done: ${image.file.name} through ${model}.`);
    } catch (e) {
      if (e.name === 'AbortError') return;
      if (controller === current) showError(e instanceof TypeError ? `The server did not answer: ${e.message}` : e.message);
    }
  }

  // The server's PNG, pixel for pixel, on a canvas over the image; the class map's indices (0, 1, 2, ...) would be
  // black to the eye, so only they are stretched for display (the download keeps the server's bytes).
  async function draw(blob, output) {
    const bitmap = await createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
    ui.result.width = bitmap.width;
    ui.result.height = bitmap.height;
    const context = ui.result.getContext('2d');
    context.drawImage(bitmap, 0, 0);
    bitmap.close();
    if (output === 'mask') stretch(context, ui.result.width, ui.result.height);
    if (downloadUrl) URL.revokeObjectURL(downloadUrl);
    downloadUrl = URL.createObjectURL(blob);
    ui.download.href = downloadUrl;
    ui.download.download = `${output}.png`;
    ui.stage.hidden = false;
    ui.result.hidden = false;
    fit();
  }

  // Small photos are enlarged and large ones shrunk to the room there is: the column's width, most of the window's height.
  function fit() {
    const { naturalWidth: width, naturalHeight: height } = ui.source;
    if (!width || !height || ui.stage.hidden) return;
    const room = Math.min(ui.stage.parentElement.clientWidth / width, (window.innerHeight * 0.72) / height);
    ui.stage.style.width = `${Math.floor(width * room)}px`; // CSSOM, which the CSP allows
  }

  function stretch(context, width, height) {
    const pixels = context.getImageData(0, 0, width, height);
    const data = pixels.data;
    let top = 1;
    for (let i = 0; i < data.length; i += 4) if (data[i] !== 255 && data[i] > top) top = data[i];
    const gain = Math.floor(200 / top);
    for (let i = 0; i < data.length; i += 4) {
      if (data[i] === 255) continue; // not predicted: stays white
      data[i] = data[i + 1] = data[i + 2] = data[i] * gain;
    }
    context.putImageData(pixels, 0, 0);
  }

  function legend(summary, output) {
    const rows = [...summary.classes].sort((a, b) => b.pixels - a.pixels).map((c) => {
      const swatch = document.createElement('span');
      swatch.className = 'swatch';
      swatch.style.backgroundColor = `rgb(${c.color.join(',')})`; // CSSOM, which the CSP allows (no inline style)
      return row(swatch, `${c.name} (${c.index})`, c.fraction, c.pixels, 'class');
    });
    const predicted = summary.classes.reduce((sum, c) => sum + c.pixels, 0);
    if (predicted < summary.pixels) {
      rows.push(row(document.createTextNode('—'), 'not predicted (255)', (summary.pixels - predicted) / summary.pixels, summary.pixels - predicted, 'unpredicted'));
    }
    ui.legend.replaceChildren(...rows);
    ui.note.textContent = `${summary.width}×${summary.height} pixels.` +
      (output === 'overlay' ? ' The overlay leaves class 0 and unpredicted pixels unpainted.' : '') +
      (output === 'mask' ? ' Class indices are brightened for display; the download holds the raw indices.' : '');
  }

  function row(swatch, name, fraction, pixels, kind) {
    const tr = document.createElement('tr');
    tr.className = kind;
    const cells = [swatch, name, `${(fraction * 100).toFixed(2)} %`, pixels.toLocaleString('en')];
    for (const content of cells) {
      const td = document.createElement('td');
      td.append(content);
      tr.append(td);
    }
    tr.children[1].className = 'name';
    return tr;
  }

  function curlCommand(model, query, output) {
    const base = new URL(`predictions/${encodeURIComponent(model)}`, document.baseURI);
    const auth = ui.token.value.trim() ? '-H "Authorization: Bearer $INFERENCE_KEY" ' : '';
    return `curl ${auth}"${base}?${query}" -T ${JSON.stringify(image.file.name)} -o ${output}.png`;
  }

  function choose(file) {
    if (!file) return;
    if (image) URL.revokeObjectURL(image.url);
    image = { file, url: URL.createObjectURL(file) };
    ui.source.src = image.url;
    ui.stage.hidden = true;
    ui.after.hidden = true;
    run();
  }

  ui.form.addEventListener('submit', (e) => {
    e.preventDefault();
    run();
  });
  ui.refresh.addEventListener('click', listModels);
  ui.source.addEventListener('load', fit);
  window.addEventListener('resize', fit);
  ui.token.addEventListener('change', listModels);
  ui.file.addEventListener('change', () => choose(ui.file.files[0]));
  ui.opacity.addEventListener('input', () => {
    ui.result.style.opacity = String(ui.opacity.value / 100);
  });
  // A file dropped anywhere on the page is taken, rather than the browser navigating away to it.
  document.addEventListener('dragover', (e) => {
    e.preventDefault();
    ui.drop.classList.add('over');
  });
  document.addEventListener('dragleave', () => ui.drop.classList.remove('over'));
  document.addEventListener('drop', (e) => {
    e.preventDefault();
    ui.drop.classList.remove('over');
    choose(e.dataTransfer.files[0]);
  });

  listModels();
})();
