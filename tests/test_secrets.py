"""No built-in secret: processes started without theirs refuse with one clear line; `make run`'s runner
creates per-machine secrets under var/secrets/ (folder 0700, files 0600)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from mesocare import runner
from mesocare.runner import free_port, local_secrets
from mesocare.settings import (
    ACTION_SECRET,
    DATA_KEYS,
    RASA_JWT_SECRET,
    ROOT,
    SECRET_KEY,
    SECRETS,
    MissingSecretError,
    Settings,
)

BIN = Path(sys.executable).parent


def env_without(*names: str, **extra: str) -> dict[str, str]:
    """This environment minus every secret, plus the secrets in `extra` except those in `names`."""
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    env.update({k: v for k, v in extra.items() if k not in names})
    return env


def refuses(argv: list[str], env: dict[str, str], variable: str) -> None:
    """`argv` exits non-zero within the timeout (it never starts serving), naming `variable` in one
    line, without a traceback."""
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if variable in line]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr


@pytest.fixture(scope="module")
def all_secrets() -> dict[str, str]:
    return runner.new_secrets()


def test_staff_app_refuses_to_start_without_its_secrets(all_secrets: dict) -> None:
    argv = [str(BIN / "mesocare"), "staff", "serve", "--port", str(free_port())]
    refuses(argv, env_without(SECRET_KEY, **all_secrets), SECRET_KEY)
    refuses(argv, env_without(RASA_JWT_SECRET, **all_secrets), RASA_JWT_SECRET)


def test_action_server_refuses_to_start_without_its_secret(all_secrets: dict) -> None:
    argv = [sys.executable, "-m", "mesocare.action_server", "--port", str(free_port())]
    refuses(argv, env_without(ACTION_SECRET, **all_secrets), ACTION_SECRET)
    refuses(argv, env_without(DATA_KEYS, **all_secrets), DATA_KEYS)


def test_rasa_server_refuses_to_start_without_its_secrets(all_secrets: dict) -> None:
    argv = [sys.executable, "-m", "mesocare.rasa_server", "--port", str(free_port()), "--enable-api"]
    refuses(argv, env_without(RASA_JWT_SECRET, **all_secrets), RASA_JWT_SECRET)
    refuses(argv, env_without(ACTION_SECRET, **all_secrets), ACTION_SECRET)


def test_rasa_sdk_server_refuses_to_serve_the_actions(all_secrets: dict) -> None:
    """`rasa run actions` has no authentication: the actions package will not load in it."""
    argv = [str(BIN / "rasa"), "run", "actions", "--actions", "actions", "--port", str(free_port())]
    refuses(argv, env_without(**all_secrets), ACTION_SECRET)


def test_settings_have_no_built_in_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    for attr, name in (("secret_key", SECRET_KEY), ("rasa_jwt_secret", RASA_JWT_SECRET),
                       ("action_secret", ACTION_SECRET)):
        with pytest.raises(MissingSecretError, match=name):
            getattr(settings, attr)
    assert settings.data_keys == ""  # mesocare.crypto refuses without keys
    given = Settings(secret_key="k" * 32)
    assert given.secret_key == "k" * 32 and Settings(**given.__dict__).secret_key == "k" * 32
    assert "k" * 32 not in repr(given)
    monkeypatch.setenv(ACTION_SECRET, "from-the-environment")
    assert Settings().action_secret == "from-the-environment"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_runner_creates_private_per_machine_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "rasa-token").write_text("old token\n")
    old_umask = os.umask(0)  # the modes must not depend on the caller's umask
    try:
        first = local_secrets(tmp_path)
    finally:
        os.umask(old_umask)
    folder = tmp_path / "secrets"
    assert mode(folder) == 0o700
    assert sorted(p.name for p in folder.iterdir()) == sorted(SECRETS)
    assert all(mode(folder / name) == 0o600 for name in SECRETS)
    assert set(first) == set(SECRETS) and len(set(first.values())) == len(SECRETS)
    assert all(len(v) >= 32 for v in first.values())
    Fernet(first[DATA_KEYS].split(",")[0])  # a valid Fernet key
    assert not (tmp_path / "rasa-token").exists()  # the old API token is gone

    (folder / SECRET_KEY).chmod(0o644)
    folder.chmod(0o755)
    monkeypatch.setenv(ACTION_SECRET, "exported-by-the-operator")
    second = local_secrets(tmp_path)
    assert second == {**first, ACTION_SECRET: "exported-by-the-operator"}  # kept; the environment wins
    assert (folder / ACTION_SECRET).read_text().strip() == first[ACTION_SECRET]
    assert mode(folder) == 0o700 and mode(folder / SECRET_KEY) == 0o600


def test_make_run_environment_uses_var_dir_secrets(tmp_path: Path) -> None:
    """`python -m mesocare.runner` (make run) gives its children the secrets from MESOCARE_VAR_DIR."""
    code = "from mesocare.runner import default_env; import json; print(json.dumps(default_env()))"
    env = {**env_without(), "MESOCARE_VAR_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    children = json.loads(out)
    for name in SECRETS:
        assert children[name] == (tmp_path / "secrets" / name).read_text().strip()
