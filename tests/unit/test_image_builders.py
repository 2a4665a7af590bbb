"""Image builders behind the Builder port: the exact buildx command line (a fake ``docker`` on PATH that answers
like buildx), the login through stdin, the registry cache showing as a cache hit, the factory's choice, and the
parsing of buildah's own log."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from sophia import wiring
from sophia.build import buildah, buildx
from sophia.build.images import ImageBuilder
from sophia.config import ConfigError, Settings, load_config
from tests.fakes import docker_cli

TOKEN = "ghp_fakeTokenThatMustNeverAppear0123456789"


def _source_tree(root: Path) -> str:
    """A committed checkout with a Dockerfile; returns its commit SHA."""
    (root / "src" / "sophia").mkdir(parents=True)
    (root / "src" / "sophia" / "__init__.py").write_text("")
    (root / "docker").mkdir()
    (root / "docker" / "requirements.txt").write_text("fastapi\n")
    (root / "pyproject.toml").write_text("[project]\nname='x'\n")
    (root / "README.md").write_text("x\n")
    (root / "Dockerfile").write_text("FROM scratch\n")
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "-C", str(root)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "tree"], check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()


def _settings(repo_root: Path, tmp_path: Path, env: dict[str, str], **images: object) -> Settings:
    source = tmp_path / "checkout"
    source.mkdir()
    _source_tree(source)
    return load_config(
        repo_root / "sophia.yaml",
        env=env,
        overrides={
            "source_dir": str(source),
            "state_dir": str(tmp_path / "state"),
            "release": {"builder": "buildx", "images": {"services": ["comms-mcp", "crm-mcp"], "scan": False, **images}},
        },
    )


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "bin"
    docker_cli.install(folder)
    monkeypatch.setenv("PATH", docker_cli.path_with(folder))
    monkeypatch.setenv("FAKE_DOCKER_TOKEN", TOKEN)
    return folder


GITHUB_ENV = {
    "GITHUB_TOKEN": TOKEN,
    "REGISTRY": "ghcr.io",
    "GITHUB_REPOSITORY_OWNER": "Sophia-AI",
    "GITHUB_REF_NAME": "feature/Images",
    "GITHUB_ACTOR": "octocat",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "sophia-ai/sophia-release",
    "PRODUCTION_TAG": "v2.0.0",
}


def test_buildx_command_line_login_and_artifact(repo_root: Path, tmp_path: Path, fake_docker: Path) -> None:
    settings = _settings(repo_root, tmp_path, GITHUB_ENV)
    builder = wiring.builder(settings)
    assert isinstance(builder, ImageBuilder)
    artifact = builder.build_sync("v2.0.0")  # type: ignore[attr-defined]
    sha = subprocess.run(["git", "-C", str(settings.source_dir), "rev-parse", "HEAD"], capture_output=True,
                         text=True, check=True).stdout.strip()  # fmt: skip
    created = subprocess.run(["git", "-C", str(settings.source_dir), "log", "-1", "--format=%cI"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip

    calls = docker_cli.calls(fake_docker)
    argvs = [c["argv"] for c in calls]
    assert argvs[0] == ["buildx", "version"]
    assert ["login", "ghcr.io", "--username", "octocat", "--password-stdin"] in argvs
    login = next(c for c in calls if c["argv"][0] == "login")
    assert login["stdin"] == TOKEN  # the token went in on stdin ...
    assert all(TOKEN not in json.dumps(c["argv"]) for c in calls)  # ... and into no argv
    builds = [a for a in argvs if a[:2] == ["buildx", "build"]]
    assert len(builds) == 2
    repo = "ghcr.io/sophia-ai/sophia-comms-mcp"
    metadata = builds[0][builds[0].index("--metadata-file") + 1]
    assert builds[0] == [
        "buildx", "build",
        "--file", str(settings.source_dir / "Dockerfile"),
        "--platform", "linux/amd64,linux/arm64",
        "--build-arg", "SERVICE=comms-mcp",
        "--build-arg", "VERSION=v2.0.0",
        "--build-arg", f"REVISION={sha}",
        "--build-arg", "SOURCE=https://github.com/sophia-ai/sophia-release",
        "--build-arg", f"CREATED={created}",
        "--tag", f"{repo}:{sha}",
        "--tag", f"{repo}:feature-images",
        "--tag", f"{repo}:v2.0.0",
        "--cache-from", f"type=registry,ref={repo}:buildcache",
        "--cache-to", f"type=registry,ref={repo}:buildcache,mode=max",
        "--metadata-file", metadata,
        "--progress", "plain",
        "--push",
        str(settings.source_dir),
    ]  # fmt: skip

    assert artifact.kind.value == "image"
    assert artifact.images["comms-mcp"].startswith(f"{repo}@sha256:")
    assert artifact.images["crm-mcp"].startswith("ghcr.io/sophia-ai/sophia-crm-mcp@sha256:")
    assert artifact.tags["comms-mcp"] == (f"{repo}:{sha}", f"{repo}:feature-images", f"{repo}:v2.0.0")
    assert artifact.git_sha == sha
    assert not artifact.cache_hit  # the registry cache was empty

    again = builder.build_sync("v2.0.0")  # type: ignore[attr-defined]
    assert again.cache_hit  # every step came from the registry cache
    assert again.images == artifact.images
    record = json.loads((settings.state_dir / "images" / again.content_hash / "v2.0.0.json").read_text())
    assert record["tool"] == "buildx"
    assert record["layers"]["comms-mcp"] == {"steps": 4, "cached": 4}
    assert TOKEN not in json.dumps(record)


def test_buildx_without_a_token_refuses_before_building(repo_root: Path, tmp_path: Path, fake_docker: Path) -> None:
    env = {k: v for k, v in GITHUB_ENV.items() if k != "GITHUB_TOKEN"}
    builder = wiring.builder(_settings(repo_root, tmp_path, env))
    with pytest.raises(buildx.ToolError, match="GITHUB_TOKEN"):
        builder.build_sync("v2.0.0")  # type: ignore[attr-defined]
    assert not [c for c in docker_cli.calls(fake_docker) if c["argv"][:2] == ["buildx", "build"]]


def test_a_wrong_token_fails_the_login_without_showing_it(
    repo_root: Path, tmp_path: Path, fake_docker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_DOCKER_TOKEN", "another-token")
    builder = wiring.builder(_settings(repo_root, tmp_path, GITHUB_ENV))
    with pytest.raises(buildx.ToolError, match="unauthorized") as failure:
        builder.build_sync("v2.0.0")  # type: ignore[attr-defined]
    assert TOKEN not in str(failure.value)


def test_buildx_cannot_keep_images_local(repo_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="buildah"):
        wiring.builder(_settings(repo_root, tmp_path, GITHUB_ENV, push=False))


def test_image_builder_picks_buildx_when_docker_has_it(repo_root: Path, tmp_path: Path, fake_docker: Path) -> None:
    settings = _settings(repo_root, tmp_path, GITHUB_ENV)
    chosen = wiring.builder(
        settings.model_copy(update={"release": settings.release.model_copy(update={"builder": "image"})})
    )
    assert chosen._tool.name == "buildx"  # type: ignore[attr-defined]


def test_image_builder_falls_back_to_buildah(repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(repo_root, tmp_path, GITHUB_ENV)
    empty = tmp_path / "nothing"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no docker at all
    chosen = wiring.builder(
        settings.model_copy(update={"release": settings.release.model_copy(update={"builder": "image"})})
    )
    assert chosen._tool.name == "buildah"  # type: ignore[attr-defined]


BUILDAH_LOG = """\
[1/2] STEP 1/4: FROM localhost/sophia-base:bookworm AS build
[1/2] STEP 2/4: WORKDIR /src
--> Using cache 6f1e
[1/2] STEP 3/4: RUN python3 -m venv /opt/venv
--> Using cache 9a2b
[1/2] STEP 4/4: COPY src /src/src
--> 77aa
[2/2] STEP 1/2: FROM localhost/sophia-base:bookworm AS runtime
[2/2] STEP 2/2: COPY --from=build /opt/venv /opt/venv
--> Using cache 1c8e
[2/2] COMMIT localhost/sophia-mcp-research:test
"""

BUILDX_LOG = """\
#1 [internal] load build definition from Dockerfile
#1 DONE 0.0s
#5 [build 1/3] FROM docker.io/library/python:3.11-slim@sha256:aa
#5 CACHED
#6 [build 2/3] RUN python3 -m venv /opt/venv
#6 CACHED
#7 [build 3/3] COPY src /src/src
#7 DONE 0.2s
#8 [runtime 2/2] COPY --from=build /opt/venv /opt/venv
#8 CACHED
"""


@pytest.mark.parametrize(
    ("parse", "log", "expected"),
    [
        (buildah.count_steps, BUILDAH_LOG, (4, 3)),
        (buildah.count_steps, "", (0, 0)),
        (buildx.count_steps, BUILDX_LOG, (3, 2)),
        (buildx.count_steps, "#1 [internal] load .dockerignore\n#1 CACHED\n", (0, 0)),
    ],
)
def test_step_counts_from_the_tools_logs(parse: object, log: str, expected: tuple[int, int]) -> None:
    assert parse(log) == expected  # type: ignore[operator]


async def test_the_build_record_carries_digests_tags_and_honest_scans(
    repo_root: Path, tmp_path: Path, fake_docker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from sophia.build import scan
    from sophia.engine.model import Artifact
    from sophia.engine.record import StageStatus
    from sophia.engine.stages.build import BuildCache
    from tests.fakes.engine_world import world

    monkeypatch.setattr(scan, "_executable", lambda name: None)  # no pip-audit, trivy or grype here
    settings = _settings(repo_root, tmp_path, GITHUB_ENV, scan=True)
    w = await world(repo_root, tmp_path)
    ctx = dataclasses.replace(w.ctx, settings=settings,
                              ports=dataclasses.replace(w.ctx.ports, builder=wiring.builder(settings)))  # fmt: skip
    result = await BuildCache().run(ctx)

    assert result.status is StageStatus.PASSED
    recorded = Artifact.from_dict(ctx.record.artifact or {})
    assert recorded.images["comms-mcp"].startswith("ghcr.io/sophia-ai/sophia-comms-mcp@sha256:")
    assert "ghcr.io/sophia-ai/sophia-comms-mcp:v1.1.0" in recorded.tags["comms-mcp"]
    assert recorded.sbom is None  # a buildx image has no local files and pip-audit is missing: no SBOM, said so
    assert [s["status"] for s in recorded.scans] == ["not scanned", "not scanned"]
    assert "scans: pip-audit not scanned: pip-audit is not installed" in result.detail
    assert "no SBOM" in result.detail
    assert "clean" not in result.detail
