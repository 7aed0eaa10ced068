"""Packaging: docker-compose.yml, the two Dockerfiles and the systemd unit.

Needs no PBX and no Docker engine: Debian's docker-compose (1.29) validates a compose file on
its own, and systemd-analyze verifies a unit file offline (both from scripts/setup). What is
checked here is that the files are valid and agree with each other and with the daemon;
test_docker.py builds the images and runs the stack with a real engine.
"""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from callwarden.config import load_config
from callwarden.exit_codes import ExitCode
from tests.integration.harness import REPO

pytestmark = pytest.mark.integration

COMPOSE_FILE = REPO / "docker-compose.yml"
DAEMON_DOCKERFILE = REPO / "Dockerfile"
ASTERISK_DOCKERFILE = REPO / "docker" / "asterisk" / "Dockerfile"
UNIT_FILE = REPO / "config" / "systemd" / "callwarden.service"


# ---- a tiny parser for `docker-compose config` output ---------------------------------------
# PyYAML's block style as docker-compose prints it: mappings, sequences, plain or quoted
# scalars (long ones folded onto indented continuation lines), `{}` and `[]`. Nothing else.

_KEY = re.compile(r"^([^\s'\"#-][^:]*?|-[^\s:][^:]*?):(?: (.*))?$")


def _scalar(text: str) -> Any:
    text = text.strip()
    if text in ("{}", "[]"):
        return {} if text == "{}" else []
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return json.loads(text)
    if text in ("true", "false"):
        return text == "true"
    if text in ("null", "~"):
        return None
    if re.fullmatch(r"-?[0-9]+", text):
        return int(text)
    return text


def _block(lines: list[tuple[int, str]], pos: int, indent: int) -> tuple[Any, int]:
    if lines[pos][1].startswith("- "):
        seq = []
        while pos < len(lines) and lines[pos][0] == indent and lines[pos][1].startswith("- "):
            item = lines[pos][1][2:]
            if _KEY.match(item):  # a mapping as a sequence item: its keys sit 2 columns in
                lines[pos] = (indent + 2, item)
                value, pos = _block(lines, pos, indent + 2)
            else:
                value, pos = _scalar(item), pos + 1
            seq.append(value)
        return seq, pos
    mapping: dict[str, Any] = {}
    while pos < len(lines) and lines[pos][0] == indent and not lines[pos][1].startswith("- "):
        match = _KEY.match(lines[pos][1])
        assert match, f"unexpected YAML line: {lines[pos][1]!r}"
        key, rest = match.group(1), match.group(2)
        pos += 1
        if rest:
            mapping[key] = _scalar(rest)
        elif pos < len(lines) and (
            lines[pos][0] > indent or (lines[pos][0] == indent and lines[pos][1].startswith("- "))
        ):
            mapping[key], pos = _block(lines, pos, lines[pos][0])
        else:
            mapping[key] = None
    return mapping, pos


def parse_compose_yaml(text: str) -> Any:
    lines: list[tuple[int, str]] = []
    for raw in text.splitlines():
        body = raw.strip()
        if not body or body.startswith("#"):
            continue
        if lines and not body.startswith("- ") and not _KEY.match(body):
            indent, previous = lines[-1]  # a folded continuation of the previous scalar
            lines[-1] = (indent, f"{previous} {body}")
            continue
        lines.append((len(raw) - len(raw.lstrip(" ")), body))
    value, pos = _block(lines, 0, lines[0][0])
    assert pos == len(lines), f"unparsed YAML from line {pos}: {lines[pos]!r}"
    return value


def test_the_tiny_yaml_parser_reads_what_pyyaml_writes() -> None:
    text = (
        "services:\n"
        "  a:\n"
        "    cap_drop:\n"
        "    - ALL\n"
        "    test:\n"
        "    - CMD\n"
        "    - timeout 2 bash -c 'x' | grep\n"
        "      -q 'y z' && true\n"
        "    ports:\n"
        "    - mode: host\n"
        "      target: 1883\n"
        "    port: '1883'\n"
        "    env:\n"
        "      URL: http://127.0.0.1:9108/healthz\n"
        "    init: true\n"
        "volumes:\n"
        "  store: {}\n"
    )
    assert parse_compose_yaml(text) == {
        "services": {
            "a": {
                "cap_drop": ["ALL"],
                "test": ["CMD", "timeout 2 bash -c 'x' | grep -q 'y z' && true"],
                "ports": [{"mode": "host", "target": 1883}],
                "port": "1883",
                "env": {"URL": "http://127.0.0.1:9108/healthz"},
                "init": True,
            }
        },
        "volumes": {"store": {}},
    }


# ---- docker-compose.yml ---------------------------------------------------------------------


def docker_compose(compose_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: run scripts/setup (Debian package docker-compose)"
    return subprocess.run(
        [binary, "-f", str(compose_file), "--project-directory", str(REPO), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def dockerfile_instruction(path: Path, name: str) -> str:
    """The arguments of the last ``name`` instruction, continuation lines joined."""
    text = path.read_text().replace("\\\n", " ")
    found = re.findall(rf"^{name}\s+(.*)$", text, re.MULTILINE)
    assert found, f"{path.relative_to(REPO)} has no {name}"
    return str(found[-1]).strip()


def mount_sources(service: dict[str, Any]) -> dict[str, str]:
    """Mount target -> source: "src:dst[:mode]" (compose 1.x) or long syntax (compose 2.x)."""
    mounts = {}
    for volume in service["volumes"]:
        if isinstance(volume, dict):
            mounts[volume["target"]] = volume["source"]
        else:
            source, target = volume.split(":")[:2]
            mounts[target] = source
    return mounts


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    result = docker_compose(COMPOSE_FILE, "config")
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    parsed = parse_compose_yaml(result.stdout)
    assert isinstance(parsed, dict)
    return parsed


def test_compose_file_is_valid_with_the_three_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"asterisk", "mosquitto", "callwarden"}
    listed = docker_compose(COMPOSE_FILE, "config", "--services")
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) == set(compose["services"])  # the parser agrees with compose


def test_compose_asterisk_and_daemon_share_the_hosts_network(compose: dict[str, Any]) -> None:
    # The lab config binds Asterisk to 127.0.0.1 and AMI permits 127.0.0.1 only.
    services = compose["services"]
    assert services["asterisk"]["network_mode"] == "host"
    assert services["callwarden"]["network_mode"] == "host"
    assert "ports" not in services["asterisk"]  # published ports are meaningless on the host network
    # The broker is published on the host's loopback only (anonymous access in the lab).
    for port in services["mosquitto"]["ports"]:  # "127.0.0.1:1883:1883/tcp" (compose 1.x) or long syntax (2.x)
        assert (port["host_ip"] if isinstance(port, dict) else port.split(":")[0]) == "127.0.0.1", port


def test_compose_store_is_a_named_volume_where_the_config_puts_the_db(compose: dict[str, Any]) -> None:
    daemon = compose["services"]["callwarden"]
    mounts = mount_sources(daemon)
    assert mounts["/var/lib/callwarden"] == "callwarden-store"
    assert "callwarden-store" in compose["volumes"]
    # The image declares the same volume, and the compose daemon config keeps its db there.
    assert dockerfile_instruction(DAEMON_DOCKERFILE, "VOLUME") == "/var/lib/callwarden"
    config = load_config(REPO / "config" / "compose" / "callwarden.toml")
    assert config.store.path == "/var/lib/callwarden/callwarden.db"

    # The config file the image's CMD reads and the policy the config names are both mounted,
    # from files that exist in the checkout.
    cmd = json.loads(dockerfile_instruction(DAEMON_DOCKERFILE, "CMD"))
    assert cmd[:2] == ["run", "--config"]
    assert json.loads(dockerfile_instruction(DAEMON_DOCKERFILE, "ENTRYPOINT")) == ["callwarden"]
    assert Path(mounts[cmd[2]]) == REPO / "config" / "compose" / "callwarden.toml"
    assert str(config.policy.path) in mounts
    for source in mounts.values():
        assert source == "callwarden-store" or Path(source).is_file(), source
    broker_mounts = mount_sources(compose["services"]["mosquitto"])
    mosquitto_conf = broker_mounts["/mosquitto/config/mosquitto.conf"]
    assert Path(mosquitto_conf) == REPO / "config" / "mosquitto" / "mosquitto.conf"
    # Subscribers' sessions survive a broker restart: persistence into a named volume.
    settings = dict(line.split(" ", 1) for line in Path(mosquitto_conf).read_text().splitlines() if line[:1].isalpha())
    assert (settings["persistence"], settings["persistence_location"]) == ("true", "/mosquitto/data/")
    assert broker_mounts["/mosquitto/data"] == "mosquitto-data" and "mosquitto-data" in compose["volumes"]


def test_compose_daemon_waits_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    depends = services["callwarden"]["depends_on"]
    assert set(depends) == {"asterisk", "mosquitto"}
    for name, condition in depends.items():
        assert condition["condition"] == "service_healthy"
        assert services[name]["healthcheck"]["test"][0] == "CMD", f"{name} needs a healthcheck"
    # The compose healthcheck of asterisk is the image's own: they must not drift apart.
    image_check = dockerfile_instruction(ASTERISK_DOCKERFILE, "HEALTHCHECK")
    image_cmd = json.loads(image_check[image_check.index("CMD ") + 4 :])
    assert services["asterisk"]["healthcheck"]["test"] == ["CMD", *image_cmd]


def test_compose_rejects_a_broken_file(tmp_path: Path) -> None:
    text = COMPOSE_FILE.read_text()
    control = tmp_path / "ok.yml"
    control.write_text(text)
    assert docker_compose(control, "config").returncode == 0  # the copy as such is fine

    anchor = "  callwarden:\n    build: .\n"
    assert anchor in text
    broken = tmp_path / "broken.yml"
    broken.write_text(text.replace(anchor, anchor + "    frobnicate: true\n"))
    result = docker_compose(broken, "config")
    assert result.returncode != 0
    assert "frobnicate" in result.stderr


# ---- the images -----------------------------------------------------------------------------


def test_daemon_image_runs_unprivileged_without_test_extras() -> None:
    text = DAEMON_DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.MULTILINE)
    assert dockerfile_instruction(DAEMON_DOCKERFILE, "USER") == "10001:10001"
    assert "useradd --system --uid 10001 --gid 10001" in text
    pip = [run for run in re.findall(r"^RUN\s+(.*)$", text.replace("\\\n", " "), re.MULTILINE) if "pip" in run]
    assert len(pip) == 1
    assert "pip install --no-cache-dir . " in pip[0]  # the checkout itself, no extras ([test])
    ignored = (REPO / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", ".pytest_cache", "bench/results"):
        assert entry in ignored


def test_asterisk_image_uses_the_lab_pbx_files_and_packages() -> None:
    text = ASTERISK_DOCKERFILE.read_text()
    lab = (REPO / "scripts" / "lab-pbx").read_text()
    packages = re.search(r'^PACKAGES="([^"]+)"$', lab, re.MULTILINE)
    assert packages
    install = next(
        run for run in re.findall(r"^RUN\s+(.*)$", text.replace("\\\n", " "), re.MULTILINE) if "apt-get" in run
    )
    assert "--no-install-recommends" in install  # like the lab root
    for package in packages.group(1).split(","):
        assert re.search(rf"\s{re.escape(package)}(\s|$)", install), f"{package} (scripts/lab-pbx) is not installed"
    assert "COPY config/asterisk/*.conf /etc/callwarden-lab/" in text
    assert "COPY dialplan/ /etc/callwarden-lab/callwarden/" in text
    assert "readlink -f" in text  # sounds/en is a symlink, resolved inside the image
    etc_in_root = re.search(r"^etc_in_root=(\S+)$", lab, re.MULTILINE)
    assert etc_in_root
    cmd = json.loads(dockerfile_instruction(ASTERISK_DOCKERFILE, "CMD"))
    assert cmd == [
        "asterisk",
        "-C",
        f"{etc_in_root.group(1)}/asterisk.conf",
        "-f",
        "-n",
        "-U",
        "asterisk",
        "-G",
        "asterisk",
    ]
    for source in ("config/asterisk", "dialplan", "prompts/en/callwarden", "prompts/de/callwarden"):
        assert (REPO / source).is_dir(), source


def test_docker_lab_makes_the_base_images_the_files_name(compose: dict[str, Any]) -> None:
    # scripts/docker-lab stands in for a registry: it must make exactly the images that the
    # unchanged Dockerfiles and compose file name, and its Mosquitto the layout compose mounts.
    lab = (REPO / "scripts" / "docker-lab").read_text()
    listed = re.search(r"^BASE_IMAGES=\(([^)]*)\)$", lab, re.MULTILINE)
    assert listed
    named = {
        dockerfile_instruction(DAEMON_DOCKERFILE, "FROM"),
        dockerfile_instruction(ASTERISK_DOCKERFILE, "FROM"),
        compose["services"]["mosquitto"]["image"],
    }
    assert set(listed.group(1).split()) == named == {"python:3.11-slim", "debian:sid-slim", "eclipse-mosquitto:2"}
    stand_in = REPO / "docker" / "base" / "mosquitto" / "Dockerfile"
    assert dockerfile_instruction(stand_in, "FROM") == "debian:sid-slim"  # made locally first
    text = stand_in.read_text()
    for target in mount_sources(compose["services"]["mosquitto"]):
        assert target in text, f"the stand-in has no {target}"
    healthcheck = compose["services"]["mosquitto"]["healthcheck"]["test"]
    assert healthcheck[1] == "mosquitto_sub" and "mosquitto-clients" in text
    # The ports it checks before `up` are the stack's.
    ports = re.search(r"^PORTS=\(([^)]*)\)$", lab, re.MULTILINE)
    assert ports
    config = load_config(REPO / "config" / "compose" / "callwarden.toml")
    wanted = {f"tcp:{config.ami.port}", "udp:15060", f"tcp:{config.mqtt.port}", f"tcp:{config.http.port}"}
    assert set(ports.group(1).split()) == wanted


# ---- the systemd unit -----------------------------------------------------------------------

HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "UMask": "0027",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "ReadWritePaths": "/var/lib/callwarden",
    "StateDirectory": "callwarden",
    "StateDirectoryMode": "0750",
    "User": "callwarden",
    "Group": "callwarden",
    "DynamicUser": "no",
    "Restart": "on-failure",
    "TimeoutStopSec": "5",
    "ExecStart": "/usr/local/bin/callwarden run --config /etc/callwarden/callwarden.toml",
    "ExecReload": "/bin/kill -HUP $MAINPID",
}


def read_unit(path: Path) -> dict[str, list[str]]:
    """[Service] as key -> every value given (systemd allows repeating a key)."""
    text = path.read_text()
    # The whole file is well-formed INI (configparser keeps only the last of repeated keys).
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.read_string(text)
    assert parser.sections() == ["Unit", "Service", "Install"]
    values: dict[str, list[str]] = {}
    section = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped
        elif section == "[Service]" and "=" in stripped and not stripped.startswith(("#", ";")):
            key, _, value = stripped.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_systemd_unit_is_hardened_and_knows_the_exit_codes() -> None:
    service = read_unit(UNIT_FILE)
    for key, value in HARDENING.items():
        assert service.get(key, [None])[-1] == value, f"{key}= should be {value!r}, is {service.get(key)}"
    assert "@system-service" in service["SystemCallFilter"]
    prevent = set(service["RestartPreventExitStatus"][-1].split())
    assert prevent == {str(int(ExitCode.AMI_LOGIN_REFUSED)), str(int(ExitCode.CONFIG))}


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:  # no systemd here: the structural checks above are all there is
        assert read_unit(UNIT_FILE)["Type"] == ["exec"]
        return
    # ExecStart must name an existing binary for verify: the venv's own callwarden.
    binary = Path(sys.executable).parent / "callwarden"
    assert binary.exists(), binary
    text = UNIT_FILE.read_text().replace("/usr/local/bin/callwarden", str(binary))
    unit = tmp_path / "callwarden.service"
    unit.write_text(text)

    def verify(path: Path) -> list[str]:
        result = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60, check=False)
        # verify exits 0 on unknown keys and bad values but names the file in a warning.
        problems = [line for line in (result.stdout + result.stderr).splitlines() if path.name in line]
        if result.returncode != 0:
            problems.append(f"exit {result.returncode}: {result.stderr.strip()}")
        return problems

    assert verify(unit) == []

    security = subprocess.run(
        [analyze, "security", "--offline=true", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    exposure = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert exposure, security.stdout + security.stderr
    assert float(exposure.group(1)) <= 2.0, security.stdout  # 1.1 when written

    broken = tmp_path / "broken.service"
    broken.write_text(text.replace("ProtectHome=yes", "ProtectHome=bogus\nFrobnicate=yes"))
    problems = verify(broken)
    assert any("Frobnicate" in line for line in problems), problems
    assert any("bogus" in line for line in problems), problems
