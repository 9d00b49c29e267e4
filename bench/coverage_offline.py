"""Background-only coverage tables of the offline global p-values (offline.coverage), one method per run.

    nice -n 10 timeout 1200 python bench/coverage_offline.py bumphunt --n-toys 500
    nice -n 10 timeout 1200 python bench/coverage_offline.py nplm --n-toys 300 --n-null 300
    nice -n 10 timeout 1200 python bench/coverage_offline.py cwola --n-toys 60 --workers 2

Writes out/offline/coverage/<method>.json and <method>.md (the markdown table) and prints the table.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("method", choices=["bumphunt", "nplm", "cwola"])
    ap.add_argument("--n-toys", type=int, default=200)
    ap.add_argument("--n-null", type=int, default=300, help="NPLM null toys")
    ap.add_argument("--inner-toys", type=int, default=300, help="bump hunt: toys per scan")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--batch", type=int, default=10, help="CWoLa: toys per batch (partial tables saved after each)")
    ap.add_argument("--scheduler", default=None, help="'sync', a scheduler address, or none for a local cluster")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="out/offline/coverage")
    a = ap.parse_args()

    from l1ad.offline import coverage
    from l1ad.trigger.atomic import write_json_atomic, write_text_atomic

    t0 = time.perf_counter()
    if a.method == "bumphunt":
        res = coverage.bumphunt_campaign(a.n_toys, inner_toys=a.inner_toys, seed=a.seed, scheduler=a.scheduler or "sync")
    elif a.method == "nplm":
        res = coverage.nplm_campaign(a.n_toys, n_null=a.n_null, seed=a.seed, scheduler=a.scheduler, n_workers=a.workers)
    else:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)

        def partial(r: dict) -> None:  # a time limit may cut the campaign: keep every finished batch
            write_json_atomic(out / "cwola.partial.json", r)
            write_text_atomic(out / "cwola.partial.md", coverage.format_table(r["rows"]) + "\n")

        res = coverage.cwola_campaign(a.n_toys, seed=100_000 + a.seed, scheduler=a.scheduler, n_workers=a.workers,
                                      batch=a.batch, on_batch=partial)
    res["wall_seconds"] = time.perf_counter() - t0
    table = coverage.format_table(res["rows"])
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / f"{a.method}.json", res)
    write_text_atomic(out / f"{a.method}.md", table + f"\n\nwall time {res['wall_seconds']:.0f} s\n")
    print(table)
    print(json.dumps({k: v for k, v in res.items() if k in ("setup", "wall_seconds", "chi2_dof", "chi2_ks_p", "seconds_per_toy")}))


if __name__ == "__main__":
    main()
