"""Which embedder retrieves a neighbour whose rank-1 model family equals the held-out competition's?

Leave-one-competition-out over every eligible corpus competition (its rank-1 instruction names a family; the
dev and paper suites' competitions are excluded as in the default index). For each embedder (all-MiniLM-L6-v2,
TF-IDF) and each query form (description only; description + data type + metric bonuses) it prints the rate at
which the nearest neighbour's rank-1 family agrees, with n and a 95 % Wilson interval, beside the baselines
measured on the same competitions: the corpus majority for the data type x metric (without the held-out
competition) and `vote_family` with the conf/decide/vote.yaml weights.

    .venv/bin/python benchmarks/retrieval_quality.py            # ~1 min on 2 cores
    .venv/bin/python benchmarks/retrieval_quality.py --n-neighbours 3   # default: retrieval.n_vote (5)

Two uses, two choices: `solution=retrieval_only` takes the nearest family-naming neighbour (best by that rate);
`decide=vote` and few-shot context consume n neighbours (best by the vote's rate). Last lines:
`nearest_embedder=`, `nearest_query=`, `nearest_family_agreement=`, `vote_embedder=`, `vote_query=`,
`vote_family_agreement=`.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from omegaconf import OmegaConf

from src.config import REPO_ROOT
from src.corpus.contamination import exclusion_for_suites
from src.corpus.retrieval import CorpusIndex, MiniLMEmbedder, TfidfEmbedder, corpus_rows, vote_family

SHARED = REPO_ROOT.parent / "shared"


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a rate k/n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def line(name: str, hits: list[bool], against: list[bool] | None = None) -> str:
    k, n = sum(hits), len(hits)
    low, high = wilson(k, n)
    text = f"{name:<56} {k:>3}/{n:<3} = {k / n:.3f}  [{low:.3f}, {high:.3f}]"
    if against is not None:
        wins = sum(a and not b for a, b in zip(hits, against, strict=True))
        losses = sum(b and not a for a, b in zip(hits, against, strict=True))
        text += f"   vs majority: +{wins} / -{losses}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=str(SHARED / "data/linguacodus/result_prompts_new.csv"))
    parser.add_argument("--data-dir", default=str(SHARED / "data/kaggle"))
    parser.add_argument("--n-neighbours", type=int, default=None, help="default: retrieval.n_vote")
    args = parser.parse_args()

    rows = corpus_rows(args.corpus)
    exclusion = exclusion_for_suites(["dev", "paper"], rows, args.data_dir)
    retrieval = OmegaConf.load(REPO_ROOT / "conf/retrieval/context.yaml")
    args.n_neighbours = args.n_neighbours or int(retrieval.n_vote)
    vote_cfg = OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "conf/decide/vote.yaml").vote)
    weights = {
        "dt+metric": (float(retrieval.data_type_weight), float(retrieval.metric_weight)),
        "desc only": (0, 0),
    }
    embedders = {"all-MiniLM-L6-v2": MiniLMEmbedder(), "tfidf": TfidfEmbedder()}

    results: dict[str, list[bool]] = {}
    scores: dict[str, tuple[int, int, int]] = {}
    voted_by: dict[str, list[bool]] = {}
    majority_hits: list[bool] | None = None
    cache = Path(REPO_ROOT / ".cache" / "retrieval")
    for emb_name, embedder in embedders.items():
        for w_name, (dt_w, m_w) in weights.items():
            start = time.perf_counter()
            index = CorpusIndex(
                rows, embedder, exclude=exclusion, data_type_weight=dt_w, metric_weight=m_w, cache_dir=cache
            )
            eligible = [e for e in index.entries if e.families and e.families[0]]
            nearest, strict, voted, no_majority, majority, among = [], [], [], [], [], []
            for entry in eligible:
                truth = entry.families[0]
                hits = index.nearest(
                    entry.description,
                    entry.data_type,
                    entry.metric_category,
                    n=args.n_neighbours,
                    exclude_competitions=[entry.competition],
                )
                # the nearest neighbour whose rank-1 instruction names a family (many only blend submissions)
                named = next((h.families[0] for h in hits if h.families[0]), None)
                nearest.append(named == truth)
                strict.append(hits[0].families[0] == truth)
                among.append(any(h.families[0] == truth for h in hits))
                maj = index.majority(entry.data_type, entry.metric_category, [entry.competition])
                majority.append(maj == truth)
                voted.append(vote_family(hits, maj, **vote_cfg).family == truth)
                no_majority.append(
                    vote_family(hits, None, **{**vote_cfg, "majority_weight": 0.0}).family == truth
                )
            if majority_hits is None:
                majority_hits = majority
                print(f"eligible competitions (rank-1 names a family, dev+paper excluded): n={len(eligible)}")
                print(line("majority family for data type x metric (LOO)", majority))
            key = f"{emb_name} / {w_name}"
            results[key] = nearest
            scores[key] = (sum(nearest), sum(voted), sum(among))
            voted_by[key] = voted
            print(f"{key}:")
            print(line("  nearest family-naming neighbour's rank-1", nearest, majority))
            print(line("  nearest neighbour's rank-1 (None counts as a miss)", strict, majority))
            print(line(f"  right family among {args.n_neighbours} neighbours' rank-1", among, majority))
            print(line("  vote_family (conf/decide/vote.yaml)", voted, majority))
            print(line("  vote_family without the majority ballot", no_majority, majority))
            print(f"  ({time.perf_counter() - start:.1f} s)")
    # Two uses, two choices: retrieval_only takes the nearest family-naming neighbour; decide=vote (and the
    # few-shot context) consume n neighbours. Ties: the other measure, then among-n.
    uses = {
        "nearest": lambda k: (scores[k][0], scores[k][1], scores[k][2]),
        "vote": lambda k: (scores[k][1], scores[k][2], scores[k][0]),
    }
    lines = []
    for use, rank in uses.items():
        best = max(scores, key=rank)
        measure = results if use == "nearest" else voted_by
        for other in scores:
            if other != best:
                wins = sum(x and not y for x, y in zip(measure[best], measure[other], strict=True))
                losses = sum(y and not x for x, y in zip(measure[best], measure[other], strict=True))
                print(f"{use}, paired: {best} vs {other}: +{wins} / -{losses}")
        rate = sum(measure[best]) / len(measure[best])
        lines += [f"{use}_embedder={best.split(' / ')[0]}", f"{use}_query={best.split(' / ')[1]}"]
        lines.append(f"{use}_family_agreement={rate:.3f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
