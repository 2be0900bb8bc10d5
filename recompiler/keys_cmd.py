"""The ``kiln keygen`` subcommand: make an Ed25519 key pair for ``recompile --sign``."""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from formats.errors import KilnError
from formats.keys import generate_key
from recompiler.clikit import ReportingCommand

__all__ = ["keygen_command", "write_key_pair"]

DEFAULT_NAME = "kiln-signing"


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write a file that must not exist yet, with exactly ``mode`` whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_key_pair(directory: Path, name: str = DEFAULT_NAME) -> dict[str, str]:
    """Make a key pair as ``directory/name.key`` (0600) and ``directory/name.pub`` (0644).

    Refuses to replace either file. Returns the paths, the key id and the
    public key's inline (base64) form.
    """
    if not name or "/" in name or name in (".", ".."):
        raise KilnError(f"--name {name!r} is not a file name", hint="for example --name ci")
    private, public = directory / f"{name}.key", directory / f"{name}.pub"
    for p in (private, public):
        if os.path.lexists(p):
            raise KilnError(f"{p} already exists; keygen never replaces a key",
                            hint="choose another --name or --output-dir, or move the old key away")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        private_pem, public_pem, key = generate_key()
        _write_new(private, private_pem, 0o600)
        try:
            _write_new(public, public_pem, 0o644)
        except BaseException:
            private.unlink(missing_ok=True)     # nothing half-made is left behind
            raise
    except FileExistsError as e:
        raise KilnError(f"{e.filename} appeared while keygen was writing; nothing was kept",
                        hint="run keygen again") from None
    except OSError as e:
        raise KilnError(f"cannot write the key pair in {directory}: {e.strerror or e}",
                        hint="choose a directory you can write with --output-dir") from None
    return {"private_key": str(private), "public_key": str(public), "key_id": key.key_id,
            "public_key_base64": key.text()}


@click.command("keygen", cls=ReportingCommand,
               context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-o", "--output-dir", "output_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("."), show_default=True,
              help="Directory for the two key files (created if missing).")
@click.option("--name", default=DEFAULT_NAME, show_default=True,
              help="File name of the keys: NAME.key (private) and NAME.pub (public).")
@click.option("--json", "as_json", is_flag=True, help="Print what was made as one JSON object.")
def keygen_command(output_dir: Path, name: str, as_json: bool) -> None:
    """Make an Ed25519 key pair for signing megabinaries.

    Writes NAME.key, the private key (PEM, PKCS#8, mode 0600: keep it secret),
    and NAME.pub, the public key (PEM), and prints the key id (the BLAKE3 of
    the public key). Sign with `recompile IMAGE -o OUT --sign NAME.key`;
    trust the key on the hosts that run images by listing NAME.pub (or the
    printed base64 form) under "trusted_keys" in /etc/kiln/policy.json.
    """
    made = write_key_pair(output_dir, name)
    if as_json:
        click.echo(json.dumps(made, sort_keys=True))
        return
    click.echo(f"private key  {made['private_key']}  (keep it secret: recompile --sign "
               f"{made['private_key']})")
    click.echo(f"public key   {made['public_key']}")
    click.echo(f"key id       {made['key_id']}")
    click.echo(f"inline form  {made['public_key_base64']}  (for \"trusted_keys\" in a policy)")
