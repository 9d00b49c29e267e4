"""Export a QModel (+ its framework model) as an hls4ml project with the score block and comparators."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from l1ad.firmware.ir import QModel
from l1ad.trigger.atomic import atomic_path, write_json_atomic, write_text_atomic

from . import codegen
from .config import HLSConfig
from .convert import HLSExportError, apply_ir_precisions, convert, network_ports

PROJECT_FILE = "l1ad_project.json"


@dataclass
class HLSProject:
    """An exported project directory and what it was made from."""

    path: Path
    config: HLSConfig
    qmodel: QModel
    source_kind: str  # "qkeras" | "qonnx"
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
        return cls(path=p, config=cfg, qmodel=q, source_kind=meta["source_kind"], ports=ports,
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


def export_hls(q: QModel, source: Any, out_dir: str | Path, config: HLSConfig | None = None, *,
               tb_vectors: dict[str, np.ndarray] | None = None) -> HLSProject:
    """Write the hls4ml project for QModel `q` to `out_dir` (replaced atomically).

    `source` is the framework model the QModel was imported from: a QKeras model, or the QONNX model of a
    Brevitas network (path / ModelProto / ModelWrapper). hls4ml converts it; every precision is then set from
    the IR and its weights are checked against the IR; the top level gains input scaling, score and comparators
    (firmware.hls.codegen). `tb_vectors` (raw input codes per set) feed tb_data/; by default
    `config.tb_vectors` events from firmware.hls.vectors."""
    from l1ad.firmware.emulator import emulate

    from .vectors import make_vectors

    cfg = config or HLSConfig()
    _check_thresholds(q)
    out = Path(out_dir)
    _check_out_dir(out)
    with atomic_path(out) as tmp:
        hm, kind = convert(source, tmp, cfg)
        table = apply_ir_precisions(hm, q)
        in_type, in_name, out_type, out_name = network_ports(hm)
        hm.write()
        p = codegen.ports_of(q, cfg.project_name, in_type, out_type)
        fw = tmp / "firmware"
        name = cfg.project_name
        cpp = fw / f"{name}.cpp"
        cpp.write_text(codegen.patch_network_cpp(cpp.read_text(), p) + codegen.top_function(q, p))
        (fw / f"{name}.h").write_text(codegen.header(q, p, in_name, out_name))
        (fw / "l1ad_types.h").write_text(codegen.types_header(q, p))
        (fw / "l1ad_blocks.h").write_text(codegen.blocks_header(q, p))
        (fw / "l1ad_io.h").write_text(codegen.io_header(q, p))
        (tmp / f"{name}_bridge.cpp").write_text(codegen.bridge_cpp(p))
        (tmp / f"{name}_test.cpp").write_text(codegen.testbench_cpp(p))
        build = tmp / "build.sh"
        build.write_text(codegen.build_script(cfg))
        build.chmod(0o755)
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
