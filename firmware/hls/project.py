"""Export a QModel as a Vitis HLS project (built from the IR alone) with the score block and comparators."""
from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from l1ad.firmware.ir import QModel
from l1ad.trigger.atomic import atomic_path, write_json_atomic, write_text_atomic

from . import codegen
from .config import HLSConfig
from .errors import HLSExportError
from .network import NNET_HEADERS, cpp_type, network_code

PROJECT_FILE = "l1ad_project.json"


@dataclass
class HLSProject:
    """An exported project directory and what it was made from."""

    path: Path
    config: HLSConfig
    qmodel: QModel
    source_kind: str  # the front-end the IR came from (QModel meta "source": "qkeras" | "qonnx"), else "qmodel"
    ports: codegen.Ports
    precisions: list[dict] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.config.project_name

    def csim(self):
        """Build and load the C simulation (firmware.hls.csim.CSim)."""
        from .csim import CSim

        return CSim(self.path, self.name)

    @classmethod
    def load(cls, path: str | Path) -> "HLSProject":
        p = Path(path)
        meta_file = p / PROJECT_FILE
        if not meta_file.is_file():
            raise FileNotFoundError(f"{p} is not an exported l1ad HLS project ({PROJECT_FILE} missing)")
        meta = json.loads(meta_file.read_text())
        cfg = HLSConfig.model_validate(meta["config"])
        q = QModel.load(p / "qmodel.json")
        ports = codegen.Ports(**meta["ports"])
        return cls(path=p, config=cfg, qmodel=q, source_kind=meta.get("source_kind", "qmodel"), ports=ports,
                   precisions=meta.get("precisions", []))


def _check_thresholds(q: QModel) -> None:
    if q.thresholds and q.score is None:
        raise HLSExportError("thresholds need a score block")


def _check_out_dir(out: Path) -> None:
    """Only an absent or empty folder, or an earlier l1ad HLS project, may be replaced (never a user's files)."""
    if out.exists() and not out.is_dir():
        raise HLSExportError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / PROJECT_FILE).is_file():
        raise HLSExportError(f"--out {out} is a non-empty folder that is not an l1ad HLS project ({PROJECT_FILE} "
                             f"missing): refusing to replace it; choose an empty or new folder")


def hls4ml_templates() -> Path:
    """The installed hls4ml package's templates/vivado folder (ap_types and nnet_utils are copied from it)."""
    import importlib.util

    spec = importlib.util.find_spec("hls4ml")
    if spec is None or not spec.submodule_search_locations:
        raise HLSExportError("the HLS export needs the hls4ml package (its ap_types and nnet_utils headers): "
                             "pip install hls4ml")
    d = Path(list(spec.submodule_search_locations)[0]) / "templates" / "vivado"
    if not (d / "ap_types" / "ap_fixed.h").is_file() or not (d / "nnet_utils").is_dir():
        raise HLSExportError(f"hls4ml's templates folder {d} lacks ap_types/ or nnet_utils/")
    return d


def _copy_headers(fw: Path) -> None:
    """ap_types/ and the nnet_utils headers the network includes (with the ones they include) into firmware/."""
    src = hls4ml_templates()
    shutil.copytree(src / "ap_types", fw / "ap_types")
    (fw / "nnet_utils").mkdir()
    todo, seen = list(NNET_HEADERS), set()
    import re

    while todo:
        h = todo.pop()
        if h in seen:
            continue
        seen.add(h)
        f = src / "nnet_utils" / h
        if not f.is_file():
            raise HLSExportError(f"hls4ml's nnet_utils lacks {h}")
        text = f.read_text()
        (fw / "nnet_utils" / h).write_text(text)
        todo += [m for m in re.findall(r'^\s*#\s*include\s+"([^"]+)"', text, re.M) if (src / "nnet_utils" / m).is_file()]


def source_kind(q: QModel, source: Any = None) -> str:
    """The front-end the QModel came from (its meta "source"), else "qmodel"."""
    kind = q.meta.get("source") if isinstance(q.meta, dict) else None
    return str(kind) if kind else "qmodel"


def precision_table(q: QModel, net_rows: list[dict]) -> list[dict]:
    """Every IR tensor (q.tensor_formats(), data-flow order, with each layer's constants before its product) with
    its format and the C++ type name it has in the project: rows {tensor, format, cpp, typedef}."""
    by_tensor = {r["tensor"]: r for r in net_rows}
    named = {"input": "l1ad_input_t", "scaled": "l1ad_scaled_t", "xq": "input_t", "score.diff": "l1ad_diff_t",
             "score.square": "l1ad_square_t", "score.accum": "l1ad_score_accum_t", "score": "l1ad_score_t"}
    rows: list[dict] = []
    for t, f in q.tensor_formats().items():
        if t.endswith(".product"):
            layer = t[: -len(".product")]
            rows += [r for k, r in by_tensor.items() if k.startswith(layer + ".") and k.rsplit(".", 1)[1]
                     in ("weight", "kernel", "bias", "scale", "offset")]
            rows.append({"tensor": t, "format": str(f), "cpp": cpp_type(f), "typedef": ""})  # exact, not stored
            continue
        td = by_tensor[t]["typedef"] if t in by_tensor else named.get(t, "")
        rows.append({"tensor": t, "format": str(f), "cpp": cpp_type(f), "typedef": td})
    return rows


def export_hls(q: QModel, source: Any = None, out_dir: str | Path | None = None, config: HLSConfig | None = None, *,
               tb_vectors: dict[str, np.ndarray] | None = None) -> HLSProject:
    """Write the Vitis HLS project for QModel `q` to `out_dir` (replaced atomically), from the IR alone.

    The network function is written per IR layer (firmware.hls.network: dense layers call hls4ml's
    ``nnet::dense_latency``, whose headers are copied from the installed hls4ml with its ap_types); the top level
    adds input scaling, input quantizer, score and comparators (firmware.hls.codegen). `source` (the framework
    model the QModel came from) is accepted for compatibility and not used. `tb_vectors` (raw input codes per
    set) feed tb_data/; by default `config.tb_vectors` events from firmware.hls.vectors."""
    from l1ad.firmware.emulator import emulate

    from .vectors import make_vectors

    if out_dir is None:
        raise TypeError("export_hls() needs out_dir")
    cfg = config or HLSConfig()
    _check_thresholds(q)
    out = Path(out_dir)
    _check_out_dir(out)
    name = cfg.project_name
    p = codegen.ports_of(q, name)
    net = network_code(q, name)
    # the text of every generated file first (refusals happen before anything is written)
    files = {
        f"firmware/{name}.cpp": codegen.network_cpp(p, net.function, codegen.top_function(q, p)),
        f"firmware/{name}.h": codegen.header(q, p),
        "firmware/defines.h": net.defines_h,
        "firmware/parameters.h": net.parameters_h,
        "firmware/l1ad_types.h": codegen.types_header(q, p),
        "firmware/l1ad_blocks.h": codegen.blocks_header(q, p),
        "firmware/l1ad_io.h": codegen.io_header(q, p),
        **{f"firmware/weights/{k}": v for k, v in net.weights.items()},
        f"{name}_bridge.cpp": codegen.bridge_cpp(p),
        f"{name}_test.cpp": codegen.testbench_cpp(p),
        "build_lib.sh": codegen.build_lib_script(p, secrets.token_hex(4)),
        "project.tcl": codegen.project_tcl(cfg),
        "build_prj.tcl": codegen.build_prj_tcl(p),
        "build.sh": codegen.build_script(cfg),
    }
    table = precision_table(q, net.precisions)
    kind = source_kind(q, source)
    with atomic_path(out) as tmp:
        fw = tmp / "firmware"
        (fw / "weights").mkdir(parents=True)
        _copy_headers(fw)
        for rel, text in files.items():
            (tmp / rel).write_text(text)
        for script in ("build_lib.sh", "build.sh"):
            (tmp / script).chmod(0o755)
        # testbench vectors and the emulator's expected codes
        vecs = tb_vectors if tb_vectors is not None else make_vectors(q, cfg.tb_vectors, seed=12345)
        x = np.concatenate([np.asarray(v, dtype=np.int64) for v in vecs.values()])[: cfg.tb_vectors]
        e = emulate(q, q.input.format.to_float(x), strict=True)
        cols = [e.outputs_int]
        if q.score is not None:
            cols.append(np.asarray(e.score_int, dtype=np.int64)[:, None])
            if q.thresholds:
                cols.append(e.trigger.astype(np.int64))
        fi, fe = codegen.tb_lines(x, np.concatenate(cols, axis=1))
        tb = tmp / "tb_data"
        tb.mkdir(exist_ok=True)
        (tb / "tb_input_features.dat").write_text(fi)
        (tb / "tb_output_predictions.dat").write_text(fe)
        q.save(tmp / "qmodel.json")
        (tmp / "README.md").write_text(codegen.readme(q, p, cfg, table, kind, None))
        meta = {"config": cfg.model_dump(mode="json"), "source_kind": kind, "ports": p.__dict__,
                "precisions": table, "qmodel": "qmodel.json"}
        (tmp / PROJECT_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return HLSProject(path=out, config=cfg, qmodel=q, source_kind=kind, ports=p, precisions=table)


def verify_project(project: HLSProject, n: int, *, seed: int = 0, sets: dict[str, np.ndarray] | None = None,
                   report_path: str | Path | None = None, with_coverage: bool = True) -> dict:
    """Build the C simulation of `project` and compare it with the emulator on `n` events (zero-bias-like,
    signal-like, edge vectors; or the given `sets`). Writes `report_path` (JSON) and refreshes the README."""
    from .csim import CSim, verify
    from .vectors import make_vectors

    sim = CSim(project.path, project.name)
    vecs = sets if sets is not None else make_vectors(project.qmodel, n, seed=seed)
    rep = verify(project.qmodel, sim, vecs, with_coverage=with_coverage)
    rep = {"project": str(project.path), "top": project.name, "source_kind": project.source_kind,
           "qmodel": project.qmodel.name, "seed": seed, **rep}
    if report_path is not None:
        write_json_atomic(report_path, rep)
    write_text_atomic(project.path / "README.md",
                      codegen.readme(project.qmodel, project.ports, project.config, project.precisions,
                                     project.source_kind, rep))
    return rep
