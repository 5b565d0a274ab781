"""Agreement of the complexity scorer with hand-labelled prompts (small / large).

    python scripts/bench/complexity_agreement.py [--threshold 0.7] [--show-misses] [--json out]

Reads the labelled sets in tests/data/ (one request per line: `prompt` or `messages`, optional
`max_tokens`, and the label a person gave it): `dev` (complexity_prompts.jsonl, 80 prompts, the
set the heuristic's keyword lists and weights were written against - its figures are optimistic)
and `held-out` (complexity_prompts_heldout.jsonl, 40 prompts written and labelled after the scorer
was frozen, never used to tune it - the honest figure), builds each request the way the router
parses it (`parse_request` on the chat body), scores it with the scorer the router uses, and
reports at the route's threshold: agreement (accuracy), the confusion matrix, precision and
recall of "large", and the same figures over a sweep of thresholds (so an operator can see what
moving the threshold costs). No network, no processes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from router.complexity import make_scorer  # noqa: E402
from router.inbound import parse_request  # noqa: E402

SETS = {"dev": REPO / "tests" / "data" / "complexity_prompts.jsonl",
        "held-out": REPO / "tests" / "data" / "complexity_prompts_heldout.jsonl"}


def load(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def request_of(row: dict[str, object]):  # noqa: ANN201 - ClientRequest
    messages = row.get("messages") or [{"role": "user", "content": row["prompt"]}]
    body: dict[str, object] = {"model": "auto", "messages": messages}
    if "max_tokens" in row:
        body["max_tokens"] = row["max_tokens"]
    return parse_request("/v1/chat/completions", orjson.dumps(body))


def evaluate(scores: list[float], labels: list[str], threshold: float) -> dict[str, float]:
    tp = sum(s >= threshold and lab == "large" for s, lab in zip(scores, labels, strict=True))
    fp = sum(s >= threshold and lab == "small" for s, lab in zip(scores, labels, strict=True))
    fn = sum(s < threshold and lab == "large" for s, lab in zip(scores, labels, strict=True))
    tn = sum(s < threshold and lab == "small" for s, lab in zip(scores, labels, strict=True))
    return {"threshold": threshold, "agreement": round((tp + tn) / len(labels), 3),
            "large_precision": round(tp / (tp + fp), 3) if tp + fp else 0.0,
            "large_recall": round(tp / (tp + fn), 3) if tp + fn else 0.0,
            "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "sent_to_large": round((tp + fp) / len(labels), 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--scorer", default="heuristic")
    parser.add_argument("--show-misses", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    scorer = make_scorer(args.scorer)
    report: dict[str, object] = {}
    for name, path in SETS.items():
        rows = load(path)
        scores = [scorer.score(request_of(row)).value for row in rows]
        labels = [str(row["label"]) for row in rows]
        main_result = evaluate(scores, labels, args.threshold)
        sweep = [evaluate(scores, labels, t / 10) for t in range(1, 10)]
        report[name] = {"threshold": main_result, "sweep": sweep}
        print(f"\n{name}: {len(rows)} prompts ({labels.count('small')} small, "
              f"{labels.count('large')} large), scorer {scorer.name}")
        print(json.dumps(main_result))
        print("| threshold | agreement | large precision | large recall | sent to large |")
        print("|---|---|---|---|---|")
        for r in sweep:
            print(f"| {r['threshold']:.1f} | {r['agreement']:.3f} | {r['large_precision']:.3f} | "
                  f"{r['large_recall']:.3f} | {r['sent_to_large']:.3f} |")
        if args.show_misses:
            for row, score, label in zip(rows, scores, labels, strict=True):
                if (score >= args.threshold) != (label == "large"):
                    text = row.get("prompt") or row["messages"][-1]["content"]  # type: ignore
                    print(f"  miss id={row['id']} label={label} score={score:.3f}: "
                          f"{str(text)[:90]!r}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
