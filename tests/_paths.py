"""Where the repository's machines and fixtures live, for every test module."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MACHINES = ROOT / "machines"
FIXTURES = ROOT / "fixtures"
DEFAULT_POLICY = MACHINES / "default.yaml"
