"""Background-only coverage tables of the offline global p-values (offline.coverage), one method per run.

    nice -n 10 timeout 1200 python bench/coverage_offline.py bumphunt --n-toys 500
    nice -n 10 timeout 1200 python bench/coverage_offline.py nplm --n-toys 300 --n-null 300 [--modes extended,shape]
    nice -n 10 timeout 1200 python bench/coverage_offline.py cwola --n-toys 60 --workers 2
    nice -n 10 timeout 2400 python bench/coverage_offline.py nplm_nn --n-toys 200 --workers 2 [--clip 2.5]
    nice -n 10 timeout 3600 python bench/coverage_offline.py cathode --n-toys 200 --workers 2
    nice -n 10 timeout 3600 python bench/coverage_offline.py nplm_syst --n-toys 100 --clip 2.5 --workers 2
    python bench/coverage_offline.py cwola --merge a/cwola.json b/cwola.partial.json   # tables of saved hunts

Writes out/offline/coverage/<method>.json and <method>.md (the markdown table) and prints the table.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("method", choices=["bumphunt", "nplm", "nplm_nn", "nplm_syst", "cwola", "cathode"])
    ap.add_argument("--n-toys", type=int, default=200)
    ap.add_argument("--n-null", type=int, default=300, help="NPLM null toys")
    ap.add_argument("--inner-toys", type=int, default=300, help="bump hunt: toys per scan")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--batch", type=int, default=10, help="CWoLa: toys per batch (partial tables saved after each)")
    ap.add_argument("--scheduler", default=None, help="'sync', a scheduler address, or none for a local cluster")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clip", type=float, default=None, help="NPLM NN: weight clip (skips the tuning scan)")
    ap.add_argument("--clips", default="1,2,3,5", help="NPLM NN: weight clips scanned by the tuning")
    ap.add_argument("--modes", default="extended", help="NPLM kernel: extended and/or shape, comma separated")
    ap.add_argument("--n-tune", type=int, default=40, help="NPLM NN: null toys per scanned clip")
    ap.add_argument("--out", default="out/offline/coverage")
    ap.add_argument("--merge", nargs="+", default=None, help="cwola/cathode: no new toys, tables of the raw toys "
                    "saved in these json files (distinct seeds, same configuration)")
    a = ap.parse_args()

    from l1ad.offline import coverage
    from l1ad.trigger.atomic import write_json_atomic, write_text_atomic

    t0 = time.perf_counter()
    if a.method == "bumphunt":
        res = coverage.bumphunt_campaign(a.n_toys, inner_toys=a.inner_toys, seed=a.seed, scheduler=a.scheduler or "sync")
    elif a.method == "nplm_nn":
        res = coverage.nplm_nn_campaign(a.n_toys, clip=a.clip, clips=tuple(float(x) for x in a.clips.split(",")),
                                        n_tune=a.n_tune, seed=a.seed, scheduler=a.scheduler, n_workers=a.workers)
    elif a.method == "nplm_syst":
        if a.clip is None:
            raise SystemExit("nplm_syst needs --clip (the weight clip tuned by the nplm_nn campaign)")
        res = coverage.nplm_syst_campaign(a.n_toys, clip=a.clip, seed=a.seed, scheduler=a.scheduler, n_workers=a.workers)
    elif a.method == "nplm":
        res = coverage.nplm_campaign(a.n_toys, n_null=a.n_null, seed=a.seed, scheduler=a.scheduler, n_workers=a.workers,
                                     modes=tuple(a.modes.split(",")))
    elif a.merge:
        raws = [json.loads(Path(f).read_text()) for f in a.merge]
        raw = [r for d in raws for r in d["raw"]]
        seeds = [r["seed"] for r in raw]
        if len(set(seeds)) != len(seeds):
            raise SystemExit("the merged files share seeds: the same toy would count twice")
        if any(d["setup"] != raws[0]["setup"] for d in raws):
            raise SystemExit("the merged files were made with different setups")
        label = "CWoLa hunt" if a.method == "cwola" else "CATHODE scan"
        res = coverage.scan_summary(raw, label, raws[0]["setup"])
        res["merged_from"] = list(a.merge)
    else:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)

        def partial(r: dict) -> None:  # a time limit may cut the campaign: keep every finished batch
            write_json_atomic(out / f"{a.method}.partial.json", r)
            write_text_atomic(out / f"{a.method}.partial.md", coverage.format_table(r["rows"]) + "\n")

        if a.method == "cwola":
            res = coverage.cwola_campaign(a.n_toys, seed=100_000 + a.seed, scheduler=a.scheduler, n_workers=a.workers,
                                          batch=a.batch, on_batch=partial)
        else:
            res = coverage.cathode_campaign(a.n_toys, seed=300_000 + a.seed, scheduler=a.scheduler, n_workers=a.workers,
                                            batch=a.batch, on_batch=partial)
    res["wall_seconds"] = time.perf_counter() - t0
    table = coverage.format_table(res["rows"])
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"{a.method}_merged" if a.merge else a.method  # never overwrite a merged input
    write_json_atomic(out / f"{name}.json", res)
    note = f"merged from {', '.join(a.merge)}" if a.merge else f"wall time {res['wall_seconds']:.0f} s"
    write_text_atomic(out / f"{name}.md", table + f"\n\n{note}\n")
    print(table)
    print(json.dumps({k: v for k, v in res.items() if k in ("setup", "wall_seconds", "chi2_dof", "chi2_ks_p", "seconds_per_toy", "null", "clip")}))


if __name__ == "__main__":
    main()
