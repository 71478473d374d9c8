"""The wheel is what users install: it must carry every package, template and migration, and work elsewhere."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


# The files beside the code that the package needs at run time, as globs over the checkout; each is installed under
# ticketd/ at the same place (deploy/ is the package ticketd.deploy).
DATA_FILES = ("mailtemplates/*/*.j2", "mailtemplates/web/*.toml", "daemon/cli/demo_mail/*.eml",
              "storage/migrations/script.py.mako", "deploy/ticketd.toml.example", "deploy/ticketd.service")


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(dist), str(ROOT)], check=True, capture_output=True, text=True, cwd=tmp_path)
    # setuptools warns of a folder of data files that is not a package of its own ("Package would be ignored"),
    # and will leave such folders out of the wheel one day.
    output = build.stdout + build.stderr
    assert "Package would be ignored" not in output and "absent from the `packages` configuration" not in output, \
        output
    wheel = next(dist.glob("ticketd-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for expected in ("ticketd/daemon/__init__.py", "ticketd/parsers/__init__.py", "ticketd/rules/__init__.py",
                     "ticketd/mailtemplates/en/received.txt.j2", "ticketd/mailtemplates/tr/received.txt.j2",
                     "ticketd/storage/migrations/env.py", "ticketd/storage/migrations/versions/0001_initial_schema.py",
                     "ticketd/daemon/cli/demo_mail/01-known-customer-turkish.eml",
                     "ticketd/deploy/ticketd.toml.example", "ticketd/deploy/ticketd.service"):
        assert expected in names
    data = sorted(f"ticketd/{p.relative_to(ROOT).as_posix()}" for pattern in DATA_FILES for p in ROOT.glob(pattern))
    missing = [name for name in data if name not in names]
    print(f"\nthe wheel carries {len(data) - len(missing)} of the checkout's {len(data)} data files")
    assert len(data) >= 68 and not missing, missing  # 59 templates, 2 form texts, 4 demo mails, 1 + 2 of deploy
    assert not any(n.startswith(("daemon/", "rules/", "storage/", "parsers/", "tests/", "deploy/")) for n in names)

    # A fresh environment that shares only the dependencies: the wheel's ticketd is the only one it can import.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site_packages = next((venv / "lib").glob("python3*/site-packages"))
    deps = [p for p in sys.path if p.endswith("site-packages")]
    (site_packages / "deps.pth").write_text("\n".join(deps) + "\n")
    target = tmp_path / "installed"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    (site_packages / "00-ticketd.pth").write_text(str(target) + "\n")
    python = venv / "bin" / "python"
    where = subprocess.run([str(python), "-c", "import ticketd.daemon, ticketd.storage.migrations as m; "
                            "print(ticketd.daemon.__file__); print(m.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, check=True)
    assert all(line.startswith(str(target)) for line in where.stdout.split()), where.stdout
    script = target / "bin" / "ticketd"
    help_text = subprocess.run([str(python), str(script), "--help"], capture_output=True, text=True,
                               cwd=tmp_path, check=False)
    assert help_text.returncode == 0, help_text.stderr
    for command in ("init", "check", "run", "deliver", "demo", "tickets", "customers", "agents", "db"):
        assert command in help_text.stdout
    demo = subprocess.run([str(python), str(script), "demo", str(tmp_path / "demo")], capture_output=True,
                          text=True, cwd=tmp_path, check=False, timeout=120)
    assert demo.returncode == 0, demo.stderr
    assert "[ACME #1] Talebiniz alındı" in demo.stdout
    assert "Ali Veli via Acme Support" in demo.stdout and "Modemi 30 saniye kapatıp açar mısınız?" in demo.stdout
    assert "Talebiniz Ali Veli adlı çalışanımıza atandı" in demo.stdout  # the rules and round-robin assigned it
    assert "Memnunum: mailto:support+1." in demo.stdout  # the satisfaction question
    assert "#1's ledger: 25 min worked, cost 150.00 TRY" in demo.stdout  # Time: and Cost: lines of Ali's mail
    assert "#1  closed   high   ali@acme.example" in demo.stdout  # the customer clicked "satisfied"
    assert "Ali's notification: [ACME #1] New request: Modem bağlantısı sürekli kopuyor   [files: ekran.png (inline)]" \
        in demo.stdout  # the customer's screenshot reached the agent, inline
    assert "Files:      kılavuz.pdf (attachment)" in demo.stdout  # and the agent's guide reached the customer
    assert "(thanks; the ticket stays resolved)" in demo.stdout
    assert "ticket #2 and #3 both named; nothing applied" in demo.stdout
    assert "[ACME #3] Talebiniz alındı: Kablo değişimi talebi" in demo.stdout  # an ISO-8859-9 stranger, in Turkish
    # the complaint form, from the wheel's own pages and words
    assert 'the page "Bize ulaşın"' in demo.stdout and "POST -> 200: Talebinizi aldık." in demo.stdout
    assert "<- the form: done, ticket #4 (source web, type complaint, category billing/invoice)" in demo.stdout
    assert ("-> deniz.arslan@example.com.tr: [ACME #4] Talebiniz alındı: Fatura iki kez kesildi   "
            "(from Acme Şikayet <sikayet@acme-sikayet.example>)") in demo.stdout  # the complaints mailbox's identity
