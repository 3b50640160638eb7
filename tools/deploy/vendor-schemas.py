#!/usr/bin/python3
"""Writes the schemas the manifest tests validate deploy/ against (tests/ServeSharp.Tests/Deploy/schemas/).

No cluster runs here, so the tests validate every manifest under deploy/ against the API's own schemas, kept in the
repository as test data. This script makes them from their sources (paths to files of those projects' repositories,
at the commits the schemas' README names):

  --kubernetes  Kubernetes' OpenAPI document (swagger.json of the release): only the definitions that the kinds in
                KINDS reach through $ref are kept.
  --crd FILE    a CustomResourceDefinition (KServe's, KEDA's): each served version's openAPIV3Schema.

Descriptions are dropped (most of the bytes, and nothing a validator reads); everything else is kept as it is.
"""
import argparse
import json
import os
import sys

import yaml

# The built-in kinds deploy/ uses: (group, version, kind) as x-kubernetes-group-version-kind names them.
KINDS = [("apps", "v1", "Deployment"), ("", "v1", "Service"), ("", "v1", "ConfigMap"), ("policy", "v1", "PodDisruptionBudget")]
# CRD objects' metadata is validated against ObjectMeta too (a CRD's schema leaves it open).
EXTRA = ["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]


def strip(node):
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v.rsplit("/", 1)[-1]
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


def kubernetes(path):
    with open(path) as f:
        definitions = json.load(f)["definitions"]
    roots = [name for name, d in definitions.items()
             if any((g["group"], g["version"], g["kind"]) in KINDS for g in d.get("x-kubernetes-group-version-kind", []))]
    missing = set(KINDS) - {(g["group"], g["version"], g["kind"]) for n in roots for g in definitions[n]["x-kubernetes-group-version-kind"]}
    if missing:
        sys.exit(f"not in {path}: {sorted(missing)}")
    keep, todo = set(), roots + EXTRA
    while todo:
        name = todo.pop()
        if name not in keep:
            keep.add(name)
            todo.extend(refs(definitions[name]))
    return {"definitions": {name: strip(definitions[name]) for name in sorted(keep)}}


def crd(path):
    with open(path) as f:
        doc = yaml.safe_load(f)
    spec = doc["spec"]
    return {
        "group": spec["group"],
        "kind": spec["names"]["kind"],
        "scope": spec["scope"],
        "versions": {v["name"]: strip(v["schema"]["openAPIV3Schema"]) for v in spec["versions"] if v.get("served", True)},
    }


def write(data, name, out):
    path = os.path.join(out, name)
    with open(path, "w") as f:
        json.dump(data, f, sort_keys=True, separators=(",", ":"))
        f.write("\n")
    print(f"{path}: {os.path.getsize(path)} bytes")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubernetes", required=True, help="Kubernetes' swagger.json")
    parser.add_argument("--crd", action="append", default=[], help="a CustomResourceDefinition YAML (repeatable)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "ServeSharp.Tests", "Deploy", "schemas"))
    args = parser.parse_args()
    write(kubernetes(args.kubernetes), "kubernetes.json", args.out)
    for path in args.crd:
        schema = crd(path)
        write(schema, f"{schema['group']}_{schema['kind'].lower()}.json", args.out)


if __name__ == "__main__":
    main()
