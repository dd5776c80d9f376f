"""Lints and renders a Helm chart with Helm's own Go SDK (helm-python-sdk), offline.

usage: render_chart.py CHART_DIR VALUES_JSON OUT_YAML [--upgrade]

Lint errors (or warnings, strict) exit 1 with the findings on stderr. The rendered manifests
(every template, hooks included, NOTES.txt left out) are written to OUT_YAML as one YAML
stream for the schema validator, and printed on stdout as one JSON array of objects.
"""
import json
import sys

import helm_python
import yaml


def main() -> int:
    chart_dir, values_json, out_yaml = sys.argv[1:4]
    upgrade = "--upgrade" in sys.argv[4:]
    values = json.loads(values_json)
    report = helm_python.lint(chart_dir, values, strict=True, kube_version="v1.33.0")
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    if problems or report.get("errors"):
        for m in problems:
            print(f"lint: {m.get('path')}: {m.get('error')}", file=sys.stderr)
        for e in report.get("errors") or []:
            print(f"lint: {e}", file=sys.stderr)
        return 1
    chart = helm_python.Chart.load(chart_dir)
    # values.schema.json: a value of the wrong type or shape is refused before rendering.
    chart.validate_schema(values)
    rendered = chart.render(
        values,
        name="terrace",
        namespace="terrace",
        is_install=not upgrade,
        is_upgrade=upgrade,
    )
    docs = []
    texts = []
    for path in sorted(rendered):
        if path.endswith("NOTES.txt"):
            continue
        text = rendered[path]
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append(doc)
                texts.append(f"# Source: {path}\n" + yaml.safe_dump(doc, sort_keys=False))
    with open(out_yaml, "w") as out:
        out.write("---\n".join(texts))
    json.dump(docs, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
