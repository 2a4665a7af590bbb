"""Scans and SBOM: the CycloneDX document lists what is installed in the image's venv; a scanner that is missing
or cannot reach its advisory source says "not scanned" with the reason, never "clean"; an installed scanner's
findings are counted from its own report; the build-cache summary shows all of it."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from sophia.build import scan
from sophia.engine.stages.build import scan_summary

REF = "localhost/sophia-test/sophia-comms-mcp@sha256:" + "a" * 64


def _rootfs(root: Path, packages: dict[str, str]) -> Path:
    site = root / "opt/venv/lib/python3.11/site-packages"
    for name, version in packages.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nbody\n")
    return site


def _tool(folder: Path, name: str, body: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / name
    exe.write_text(f"#!{sys.executable}\nimport json, sys\nargs = sys.argv[1:]\n{body}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)


def test_sbom_lists_the_venvs_distributions(tmp_path: Path) -> None:
    _rootfs(tmp_path / "root", {"fastapi": "0.115.0", "Sophia_Release": "0.1.0"})
    site = scan.site_packages(tmp_path / "root")
    assert site is not None
    doc = scan.cyclonedx(REF, scan.distributions(site))
    assert doc["bomFormat"] == "CycloneDX"
    assert doc["specVersion"] == "1.5"
    assert doc["metadata"]["component"]["bom-ref"] == REF
    assert [(c["name"], c["purl"]) for c in doc["components"]] == [
        ("fastapi", "pkg:pypi/fastapi@0.115.0"),
        ("Sophia_Release", "pkg:pypi/sophia-release@0.1.0"),
    ]


def test_missing_scanners_are_not_scanned_with_a_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan, "_executable", lambda name: None)  # neither pip-audit, trivy nor grype on this machine
    _rootfs(tmp_path / "root", {"fastapi": "0.115.0"})
    sbom, scans = scan.scan_image(REF, tmp_path / "root", tmp_path / "requirements.txt", tmp_path / "out")
    assert sbom is not None  # the SBOM needs no scanner
    assert json.loads(Path(sbom).read_text())["components"]
    assert [(s["tool"], s["status"], s["reason"]) for s in scans] == [
        ("pip-audit", "not scanned", "pip-audit is not installed"),
        ("trivy/grype", "not scanned", "neither trivy nor grype is installed"),
    ]
    assert "clean" not in scan_summary(scans)
    assert scan_summary(scans) == (
        "pip-audit not scanned: pip-audit is not installed; "
        "trivy/grype not scanned: neither trivy nor grype is installed"
    )


def test_pip_audit_without_its_advisory_source_is_not_scanned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if scan._executable("pip-audit") is None:
        pytest.skip("pip-audit is not installed (the dev extras install it)")
    site = _rootfs(tmp_path / "root", {"requests": "2.0.0"})
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # discard port: nothing answers, the source is unreachable
    monkeypatch.setenv("NO_PROXY", "")
    result = scan.pip_audit(REF, ["--path", str(site), "--timeout", "5"], tmp_path / "pip-audit.json")
    assert result["status"] == "not scanned"
    assert result["reason"]


def test_an_installed_scanner_reports_its_findings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    _tool(bin_dir, "trivy", (
        "out = args[args.index('--output') + 1]\n"
        "assert args[0] == 'rootfs'\n"
        "json.dump({'Results': [{'Vulnerabilities': [{'VulnerabilityID': 'CVE-1'}, {'VulnerabilityID': 'CVE-2'}]},"
        " {'Vulnerabilities': None}]}, open(out, 'w'))"
    ))  # fmt: skip
    monkeypatch.setattr(scan, "_executable", lambda name: str(bin_dir / name) if name == "trivy" else None)
    result = scan.filesystem_scan(REF, tmp_path, tmp_path / "trivy.json")
    assert (result["tool"], result["status"], result["findings"]) == ("trivy", "findings", 2)
    assert scan_summary((result,)) == "trivy 2 findings"


def test_a_scanner_that_fails_is_not_scanned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    _tool(bin_dir, "grype", "print('failed to load vulnerability db', file=sys.stderr)\nsys.exit(1)")
    monkeypatch.setattr(scan, "_executable", lambda name: str(bin_dir / name) if name == "grype" else None)
    result = scan.filesystem_scan(REF, tmp_path, tmp_path / "grype.json")
    assert result["status"] == "not scanned"
    assert result["reason"] == "exited 1: failed to load vulnerability db"
