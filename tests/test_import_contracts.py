"""The import contracts (pyproject.toml, checked by `lint-imports` in CI) hold on the tree, fail when a
forbidden import is added (on a copy of the tree, never the working tree), and place every module of
cells/ in a plane, so a new package cannot slip past them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cells", "control", "regions", "media_core")
LINT_IMPORTS = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([LINT_IMPORTS, "--no-logo", "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def contracts() -> dict[str, dict[str, object]]:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {c["id"]: c for c in doc["tool"]["importlinter"]["contracts"]}


def copy_tree(dest: Path) -> Path:
    """The Python sources of the four root packages and pyproject.toml, under `dest`."""
    for package in PACKAGES:
        for src in (ROOT / package).rglob("*.py"):
            if "__pycache__" in src.parts:
                continue
            target = dest / src.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
    shutil.copyfile(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(contracts())} kept, 0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract", "edge"), [
    ("cells/worker/agent.py", "import control.db", "media-plane-not-control",
     "cells.worker.agent -> control.db"),
    ("cells/coordination/publisher.py", "from control.events import ingest", "media-plane-not-control",
     "cells.coordination.publisher -> control.events"),
    ("control/api/outbound.py", "from cells.providers import base", "control-only-contract",
     "control.api.outbound -> cells.providers"),
    ("control/cell/voice.py", "from cells.telephony import twilio_ws", "control-only-contract",
     "control.cell.voice -> cells.telephony"),
    ("cells/contract/envelope.py", "from cells.worker import agent", "contract-stands-alone",
     "cells.contract.envelope -> cells.worker"),
    ("cells/worker/coordinated.py", "from cells.launcher import ports", "runtime-not-launcher",
     "cells.worker.coordinated -> cells.launcher"),
    # (The contract, not the dialogue: cells.knowledge builds on cells.nlu and forbids the dialogue too.)
    ("cells/nlu/embeddings.py", "import cells.contract.envelope", "nlu-stands-alone",
     "cells.nlu.embeddings -> cells.contract.envelope"),
    ("cells/dialogue/chunker.py", "from cells.agents.reception import clinic", "verticals-behind-the-seam",
     "cells.dialogue.chunker -> cells.agents.reception.clinic"),
    ("cells/call/session.py", "from cells.telephony import twilio_media", "call-loop-carrier-neutral",
     "cells.call.session -> cells.telephony"),
    ("cells/call/confirmation.py", "from cells.agents.reception.intents import understand",
     "verticals-behind-the-seam", "cells.call.confirmation -> cells.agents.reception.intents"),
    ("cells/worker/coordinated.py", "from cells.telephony.twilio_media import Start",
     "worker-lifecycle-carrier-neutral", "cells.worker.coordinated -> cells.telephony.twilio_media"),
    ("regions/catalogue.py", "import cells.contract.jetstream", "shared-below-planes",
     "regions.catalogue -> cells.contract.jetstream"),
])
def test_a_forbidden_import_breaks_its_contract(tmp_path: Path, module: str, line: str, contract: str,
                                                edge: str) -> None:
    tree = copy_tree(tmp_path)
    path = tree / module
    path.write_text(path.read_text() + f"\n{line}  # added by the test\n")
    result = lint_imports(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    name = contracts()[contract]["name"]
    broken = [ln.strip() for ln in result.stdout.splitlines() if ln.rstrip().endswith("BROKEN")]
    assert broken, result.stdout
    # The report names the broken contract (wrapped over two lines when long) and the import.
    flat = " ".join(result.stdout.split())
    assert f"{name} BROKEN" in flat, result.stdout
    assert edge in flat, result.stdout
    assert "1 broken" in flat, result.stdout
    # The working tree was not touched.
    assert line not in (ROOT / module).read_text()


def test_every_module_of_cells_is_placed_in_the_contracts() -> None:
    children = {f"cells.{p.stem}" for p in (ROOT / "cells").iterdir()
                if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    above = {"cells.launcher", "cells.cli"}
    tools = {"cells.simulator", "cells.media_demo"}
    c = contracts()
    media_plane = set(c["media-plane-not-control"]["source_modules"])
    assert media_plane == children - above, "a cells module is in no plane (or in a gone one)"
    # Besides its contract, control may use the shared embedding module, which itself stands alone, and
    # the knowledge pipeline both planes run (extract, chunk, embed, score).
    assert set(c["control-only-contract"]["forbidden_modules"]) == children - {
        "cells.contract", "cells.nlu", "cells.knowledge"}
    assert set(c["nlu-stands-alone"]["forbidden_modules"]) == (children - {"cells.nlu"}) | {"control"}
    runtime = set(c["runtime-not-launcher"]["source_modules"])
    assert runtime == children - above - tools
    assert set(c["runtime-not-launcher"]["forbidden_modules"]) == above | tools
    # The contract may use the provider base types only: every other part of cells is forbidden to it.
    stands_alone = set(c["contract-stands-alone"]["forbidden_modules"])
    providers = {f"cells.providers.{p.stem}" for p in (ROOT / "cells" / "providers").iterdir()
                 if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    expected = (children - {"cells.contract", "cells.providers"}) | (providers - {"cells.providers.base"})
    assert stands_alone == expected | {"control"}
