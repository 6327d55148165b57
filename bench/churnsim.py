"""A fresh ChurnSim portfolio, in the fightchurn table layout `streamer import` reads.

The score is judged on data nobody here wrote: ChurnSim, the churn simulator of the book
*Fighting Churn With Data* (PyPI `fightchurn` 1.2.0). This script runs it for one config and seed
and writes the simulator's raw tables the way the development portfolios are laid out (the
files, columns, header rows, ordering and empty-field NULLs `streamer import --preset fightchurn`
expects), with a README saying how the folder was made:

    .venv/bin/python bench/churnsim.py crm6 727              # -> bench/out/churnsim/crm6-s727/
    .venv/bin/python bench/churnsim.py socialnet7 838 --out DIR
    .venv/bin/python bench/churnsim.py socialnet7 464 --customers 1500   # -> socialnet7-c1500-s464/
    .venv/bin/python bench/churn_eval.py --fightchurn bench/out/churnsim/crm6-s727 --seeds

`crm6`: a B2B CRM, 120 customers at the start, 2022; `socialnet7`: a consumer social network,
500 customers, 2020-01 to 2020-09 (the parameters of the development portfolios; only the seed
differs). `crm5` (300 customers, 2022) and `test` (500 customers, 2020-01 to 2020-09): the
package's sibling configs, which no development portfolio shows. A run with `n_parallel=1` is
deterministic: the same seed gives the same tables. Seeds used while developing the score or to
judge a change to it once, or seen in a measurement (so no longer held out): 7, 42, 101, 113, 121,
131, 151, 171, 224, 232, 242, 262, 282, 303, 335, 343, 353, 373, 393, 404, 446, 454, 464, 484, 505,
525, 557, 595, 616, 668, 706, 727, 779, 808, 838, 880, 909; the script says so when given one.

What it needs and sets up, all under `bench/out/churnsim/` (git-ignored):
- the simulator in its own venv (`venv/`, pinned in `PINS`), never in the project's;
- PostgreSQL, Debian's `postgresql` package (installed with apt-get when absent, as `streamer
  local up` installs redis-server): a private cluster (`pg/`) on 127.0.0.1 at a free port,
  started for the run and stopped after it. PostgreSQL refuses to run as root, so as root the
  cluster runs as the `postgres` user the package creates.
A crm6 run takes about 1.5-3 minutes on two cores, socialnet7 about the same.
"""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from common import BENCH_DIR, parser

from streamer.local.tools import apt_install

WORK = BENCH_DIR / "out" / "churnsim"
PINS = (
    "fightchurn==1.2.0",
    "hydra-core==1.3.8",
    "omegaconf==2.3.1",
    "numpy==2.4.6",
    "pandas==2.3.3",
    "psycopg2-binary==2.9.13",
)
CONFIGS = {  # the development portfolios' parameters (their READMEs); only the seed varies
    "crm6": ("120", "2022-01-01", "2023-01-01"),
    "socialnet7": ("500", "2020-01-01", "2020-09-01"),
    # Siblings the package ships that no development portfolio shows, at a development scale:
    # crm5 is crm6's older CRM (other churn and satisfaction parameters and app catalogues);
    # `test` a social network with other utilities and a much stronger pull of use on churn.
    "crm5": ("300", "2022-01-01", "2023-01-01"),
    "test": ("500", "2020-01-01", "2020-09-01"),
}
# fmt: off
USED_SEEDS = frozenset({
    7, 42, 101, 113, 121, 131, 151, 171, 224, 232, 242, 262, 282, 303, 335,
    343, 353, 373, 393, 404, 446, 454, 464, 484, 505, 525, 557, 595, 616, 668,
    706, 727, 779, 808, 838, 880, 909,
})
# fmt: on
DB = "churn"  # database, user and password of the private cluster (trust on 127.0.0.1 only)

# (file, query): the development folders' files, columns and order.
TABLES = (
    ("account.csv.gz", "SELECT id,channel,date_of_birth,country FROM {s}.account ORDER BY id"),
    (
        "subscription.csv.gz",
        "SELECT account_id,product,start_date,end_date,mrr,quantity,units,bill_period_months,discount "
        "FROM {s}.subscription ORDER BY account_id,start_date,product,end_date,mrr",
    ),
    (
        "event.csv.gz",
        "SELECT account_id,event_time,event_type_id,user_id,event_value FROM {s}.event "
        "ORDER BY account_id,event_time,event_type_id,user_id,event_value",
    ),
    ("event_type.csv.gz", "SELECT event_type_id,event_type_name FROM {s}.event_type ORDER BY event_type_id"),
)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(
    argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False, env=env, cwd=cwd)
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(argv)}\n{result.stderr.strip()[-2000:]}")
    return result


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's bin folder; apt-get installs it when there is none."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        say("PostgreSQL is not installed: apt-get install postgresql ...")
        apt_install("postgresql")
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not found:
            raise SystemExit("apt-get installed postgresql but no /usr/lib/postgresql/*/bin/initdb")
    return found[-1].parent


def as_cluster_user(argv: list[str]) -> list[str]:
    """PostgreSQL will not run as root: run it as the `postgres` user there."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Cluster:
    """A throw-away PostgreSQL cluster on 127.0.0.1, trusted locally, stopped on exit."""

    def __init__(self, root: Path) -> None:
        self.bin, self.root, self.port = postgres_bin(), root, free_port()
        self.data = root / "data"

    def __enter__(self) -> Cluster:
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        initdb = [str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"]
        run(as_cluster_user([*initdb, "--no-sync"]))
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root}"
        pg_ctl, log = str(self.bin / "pg_ctl"), str(self.root / "server.log")
        run(as_cluster_user([pg_ctl, "-D", str(self.data), "-w", "-o", options, "-l", log, "start"]))
        self.sql(f"CREATE USER {DB} PASSWORD '{DB}' SUPERUSER", database="postgres", user="postgres")
        self.sql(f"CREATE DATABASE {DB} OWNER {DB}", database="postgres", user="postgres")
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(
            as_cluster_user([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop"]),
            capture_output=True,
            check=False,
        )

    def psql(self, database: str = DB, user: str = DB) -> list[str]:
        psql = shutil.which("psql") or str(self.bin / "psql")
        where = ["-h", "127.0.0.1", "-p", str(self.port), "-U", user, "-d", database]
        return [psql, *where, "-X", "-q", "-v", "ON_ERROR_STOP=1"]

    def sql(self, statement: str, *, database: str = DB, user: str = DB) -> None:
        run([*self.psql(database, user), "-c", statement])

    def export(self, query: str, target: Path) -> int:
        """`query`'s rows as CSV with a header (NULL as an empty field), gzipped; the row count."""
        copy = f"\\copy ({query}) TO STDOUT WITH (FORMAT csv, HEADER)"
        with subprocess.Popen([*self.psql(), "-c", copy], stdout=subprocess.PIPE) as reader:
            assert reader.stdout is not None
            rows = -1
            with gzip.GzipFile(target, "wb", compresslevel=9, mtime=0) as out:
                for line in reader.stdout:
                    out.write(line)
                    rows += 1
        if reader.returncode != 0:
            raise SystemExit(f"psql could not export {target.name} (exit {reader.returncode})")
        return rows


def simulator_python() -> Path:
    venv = WORK / "venv"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if not stamp.exists() or stamp.read_text() != "\n".join(PINS):
        say(f"installing the simulator into {venv.relative_to(BENCH_DIR.parent)} ...")
        run([sys.executable, "-m", "venv", "--clear", str(venv)])
        run([str(python), "-m", "pip", "install", "-q", *PINS])
        stamp.write_text("\n".join(PINS))
    return python


def make(config: str, seed: int, out: Path, customers: str | None = None) -> None:
    """Simulate `config` with `seed` into `out` (`customers`: instead of the config's count)."""
    default_customers, start, end = CONFIGS[config]
    customers = customers or default_customers
    python = simulator_python()
    if seed in USED_SEEDS:
        say(f"note: seed {seed} was used while developing the score: not held-out data")
    with Cluster(WORK / "pg") as cluster, tempfile.TemporaryDirectory(prefix="churnsim-") as scratch:
        env = {
            **os.environ,
            "CHURN_DB": DB,
            "CHURN_DB_USER": DB,
            "CHURN_DB_PASS": DB,
            "CHURN_DB_HOST": "127.0.0.1",
            "PGPORT": str(cluster.port),
            "CHURN_OUT_DIR": str(Path(scratch) / "out"),
            "TMPDIR": str(Path(scratch) / "tmp"),  # ChurnSim keeps a customer-id counter there
        }
        (Path(scratch) / "tmp").mkdir()
        say(f"simulating {config} seed {seed} ({customers} customers, {start} .. {end}) ...")
        began = time.monotonic()
        simulate = ["-m", "fightchurn.churnsim.churnsim", "--config-name", config]
        simulate += [f"init_customers={customers}", f"start_date={start}", f"end_date={end}"]
        simulate += [f"random_seed={seed}", "n_parallel=1", "force=True"]
        argv = [str(python), *simulate]
        run(argv, env=env, cwd=scratch)
        seconds = time.monotonic() - began
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        counts = {name: cluster.export(query.format(s=config), out / name) for name, query in TABLES}
        where = "import fightchurn, os; print(os.path.dirname(fightchurn.__file__))"
        package = Path(run([str(python), "-c", where]).stdout.strip())
        for name in ("plans.csv", "addons.csv"):  # the package's own: its output copy of the
            catalogue = package / "churnsim" / "conf" / f"{config}_{name}"  # add-ons is overwritten
            if catalogue.exists():
                shutil.copyfile(catalogue, out / name)
        saved = Path(scratch) / "out" / config / f"{config}_conf.yaml"
        if saved.exists():
            shutil.copyfile(saved, out / "conf.yaml")
    write_readme(out, config, seed, " ".join(["python", *simulate]), counts, seconds)
    say(f"{out}: " + ", ".join(f"{name} {rows:,} rows" for name, rows in counts.items()))


def write_readme(
    out: Path, config: str, seed: int, command: str, counts: dict[str, int], seconds: float
) -> None:
    """How the folder was made (`command`: the simulator's command line) and its tables' rows."""
    rows = "\n".join(f"| `{name}` | {count:,} |" for name, count in counts.items())
    out.joinpath("README.md").write_text(
        f"""# {out.name}: a ChurnSim portfolio made by `bench/churnsim.py`

ChurnSim (PyPI `fightchurn` 1.2.0), config `{config}`, seed {seed}:

```
{command}
```

The simulator's raw tables, exported from PostgreSQL as CSV with a header row (an empty field is
NULL), gzipped, in the order and layout of the development portfolios (their READMEs describe
every column); `plans.csv` (and `addons.csv`) are the package's catalogues, `conf.yaml` the
configuration the simulator saved. Simulation took {seconds:.0f} s.

| file | rows |
|---|---|
{rows}
"""
    )


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("config", choices=sorted(CONFIGS))
    cli.add_argument("seed", type=int, help="random seed (the same seed gives the same tables)")
    cli.add_argument("--out", type=Path, help="folder to write (default: bench/out/churnsim/CONFIG-sSEED)")
    cli.add_argument(
        "--customers",
        type=int,
        help="customers at the start instead of the config's (a portfolio of another size)",
    )
    args = cli.parse_args()
    if not 0 <= args.seed < 2**31:
        cli.error("seed: 0 .. 2^31 - 1")
    if args.customers is not None and not 1 <= args.customers <= 100_000:
        cli.error("--customers: 1 .. 100000")
    size = "" if args.customers is None else f"-c{args.customers}"
    customers = None if args.customers is None else str(args.customers)
    make(args.config, args.seed, args.out or WORK / f"{args.config}{size}-s{args.seed}", customers)


if __name__ == "__main__":
    main()
