"""The CLI: bad input is one sentence on stderr and exit code 2, never a traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

from airfl.fl.cli import main

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "fedavg_digits.toml")


@pytest.mark.parametrize(
    "argv",
    [
        [CONFIG, "train.lrr=0.1"],
        [CONFIG, "rounds=-3"],
        [CONFIG, "channel.fading=ricean"],
        ["/no/such/config.toml"],
        [CONFIG, "notanoverride"],
    ],
)
def test_bad_config_exits_2_with_one_sentence(argv, capsys, tmp_path):
    code = main(["run", *argv, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("airfl: ") and len(err.splitlines()) == 1
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists(), "nothing should be written for an invalid config"


def test_console_script_runs_and_reports_bad_key(tmp_path):
    """Through a real process: exit status 2, one line, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "airfl.fl.cli", "run", CONFIG, "data.clientz=3", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "data.clientz" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "run" in capsys.readouterr().out


def test_devices_lists_radios_or_says_none(capsys):
    """`airfl devices` never fails for want of hardware: it lists devices or notices, as JSON too."""
    import json

    assert main(["devices", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert isinstance(listing, list)
    for entry in listing:
        assert {"backend", "uri", "hardware_time", "cyclic_only", "full_duplex", "notice"} <= set(entry)


def test_calibrate_runs_a_procedure_and_writes_the_profile(tmp_path, capsys):
    out = tmp_path / "cal"
    code = main(["calibrate", "noise_floor", "--radio", "loopback://c/server", "--out", str(out),
                 "-o", "gains_db=-20,0", "-o", "n_samples=4096"])
    assert code == 0
    assert (out / "profile.json").is_file() and (out / "noise_floor" / "report.txt").is_file()
    assert "recommended_rx_gain_db" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["-o", "bogus=1"], "has no option 'bogus'"),
        (["-o", "n_samples=abc"], "n_samples='abc'"),
        (["-o", "n_samples=10"], "n_samples must be >= 256"),
        (["--air", "moon"], "unknown air preset"),
    ],
)
def test_calibrate_mistakes_are_one_sentence(tmp_path, capsys, argv, fragment):
    code = main(["calibrate", "noise_floor", "--radio", "loopback://c/server", "--out", str(tmp_path), *argv])
    assert code == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1


def test_calibrate_applies_what_earlier_procedures_found(tmp_path, capsys):
    """A later procedure starts from the profile: the receive gain noise_floor chose, unless given."""
    out = str(tmp_path / "cal")
    base = ["--radio", "loopback://c/server", "--out", out]
    assert main(["calibrate", "noise_floor", *base, "-o", "gains_db=-30,-20,-10", "-o", "n_samples=4096"]) == 0
    capsys.readouterr()
    assert main(["calibrate", "frequency", *base, "--tx", "loopback://c/client0"]) == 0
    assert "loopback://c/server: rx_gain_db = -20 dB" in capsys.readouterr().out
    assert main(["calibrate", "frequency", *base, "--tx", "loopback://c/client0", "--rx-gain", "5"]) == 0
    assert "rx_gain_db = -20 dB" not in capsys.readouterr().out  # the command line wins
