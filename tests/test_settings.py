"""Where the app connects: an explicit HEALTHSTREAM_KAFKA_BOOTSTRAP / HEALTHSTREAM_REDIS_URL,
else the local stack on 127.0.0.1 at HEALTHSTREAM_KAFKA_PORT / HEALTHSTREAM_REDIS_PORT (the ports
`streamer local up` listens on), else the default ports."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from streamer.local.settings import StackSettings
from streamer.settings import Settings, settings_problem
from streamer.view.settings import ViewSettings

# (service, the variable that names the address, the port variable, the Settings attribute)
SERVICES = [
    ("kafka", "HEALTHSTREAM_KAFKA_BOOTSTRAP", "HEALTHSTREAM_KAFKA_PORT", "kafka_bootstrap"),
    ("redis", "HEALTHSTREAM_REDIS_URL", "HEALTHSTREAM_REDIS_PORT", "redis_url"),
]
DEFAULTS = {"kafka": "127.0.0.1:9092", "redis": "redis://127.0.0.1:6379/0"}
MOVED = {"kafka": "127.0.0.1:48092", "redis": "redis://127.0.0.1:48379/0"}
EXPLICIT = {"kafka": "broker:19092", "redis": "redis://cache:6379/2"}
PORTS = {"kafka": "48092", "redis": "48379"}


@pytest.fixture(autouse=True)
def _no_connection_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for _, address, port, _ in SERVICES:
        monkeypatch.delenv(address, raising=False)
        monkeypatch.delenv(port, raising=False)


@pytest.mark.parametrize(("service", "address", "port", "field"), SERVICES)
@pytest.mark.parametrize("set_port", [False, True])
@pytest.mark.parametrize("set_address", [False, True])
def test_an_explicit_address_wins_then_the_local_stacks_port_then_the_default(
    monkeypatch: pytest.MonkeyPatch,
    service: str,
    address: str,
    port: str,
    field: str,
    set_address: bool,
    set_port: bool,
) -> None:
    if set_address:
        monkeypatch.setenv(address, EXPLICIT[service])
    if set_port:
        monkeypatch.setenv(port, PORTS[service])
    expected = EXPLICIT[service] if set_address else MOVED[service] if set_port else DEFAULTS[service]
    assert getattr(Settings(), field) == expected


def test_the_app_connects_where_the_local_stack_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHSTREAM_KAFKA_PORT", "48092")
    monkeypatch.setenv("HEALTHSTREAM_REDIS_PORT", "48379")
    stack = StackSettings.from_env()
    assert (Settings().kafka_bootstrap, Settings().redis_url) == (stack.bootstrap, stack.redis_url)


def test_an_empty_port_variable_means_the_default_as_for_the_local_stack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HEALTHSTREAM_KAFKA_PORT", "")
    monkeypatch.setenv("HEALTHSTREAM_REDIS_PORT", " ")
    assert (Settings().kafka_bootstrap, Settings().redis_url) == (DEFAULTS["kafka"], DEFAULTS["redis"])


def test_an_empty_score_config_variable_means_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """It read as the current directory: "score config file . cannot be read"."""
    monkeypatch.setenv("HEALTHSTREAM_SCORE_CONFIG", "")
    assert Settings().score_config is None


def refused(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> str:
    """The settings problem of `variable` set to `value` (it must be one)."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(pydantic.ValidationError) as caught:
        Settings()
    problem = settings_problem(caught.value)
    assert problem is not None
    return problem


def test_a_heartbeat_faust_would_pass_on_as_0_ms_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """faust passes whole milliseconds on: 1e-9 s became 0, a heartbeat after every heartbeat."""
    problem = refused(monkeypatch, "HEALTHSTREAM_HEARTBEAT_INTERVAL_S", "1e-9")
    assert problem.startswith("HEALTHSTREAM_HEARTBEAT_INTERVAL_S='1e-9' is not valid")


def test_a_bad_port_is_named_in_the_settings_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = refused(monkeypatch, "HEALTHSTREAM_KAFKA_PORT", "70000")
    assert problem.startswith("HEALTHSTREAM_KAFKA_PORT='70000' is not valid")


@pytest.mark.parametrize(
    ("value", "mode"), [("off", "off"), (" OFF", "off"), ("false", "off"), ("redis", "redis")]
)
def test_the_projection_switch_is_a_setting(monkeypatch: pytest.MonkeyPatch, value: str, mode: str) -> None:
    monkeypatch.setenv("HEALTHSTREAM_PROJECTION", value)
    assert Settings().projection == mode


def test_a_misspelt_projection_is_refused_when_the_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """It was read from the environment deep in the worker, where a typo failed only once the
    app was being built."""
    problem = refused(monkeypatch, "HEALTHSTREAM_PROJECTION", "rediss")
    assert problem.startswith("HEALTHSTREAM_PROJECTION='rediss' is not valid")


@pytest.mark.parametrize(
    "servers", ["localhost", "kafka-1:9092,kafka-2:9093", "[::1]:9092", "[::1]", " a:1 , b "]
)
def test_a_bootstrap_list_the_kafka_client_reads_is_taken(servers: str) -> None:
    assert Settings(kafka_bootstrap=servers).kafka_bootstrap == servers


@pytest.mark.parametrize(
    ("servers", "says"),
    [
        ("foo:bar:baz", "'foo:bar:baz' is not HOST or HOST:PORT"),
        ("::1", "'::1' is not HOST or HOST:PORT"),
        ("a:1,,b:2", "'' is not HOST or HOST:PORT"),
        (":9092", "':9092' is not HOST or HOST:PORT"),
        ("localhost:abc", "'localhost:abc': the port must be a number from 1 to 65535"),
        ("localhost:0", "'localhost:0': the port must be a number from 1 to 65535"),
        ("localhost:65536", "'localhost:65536': the port must be a number from 1 to 65535"),
        ("localhost:٩٠٩٢", "the port must be a number from 1 to 65535"),  # digits, not ASCII ones
    ],
)
def test_a_bootstrap_list_the_kafka_client_cannot_read_is_refused_in_one_line(
    servers: str, says: str
) -> None:
    """The client raised a traceback when it first connected (int() of the port, or a split)."""
    with pytest.raises(pydantic.ValidationError) as caught:
        Settings(kafka_bootstrap=servers)
    assert says in str(caught.value)


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("HEALTHSTREAM_APP_ID", "", "must be 1 to 200 characters, not 0"),
        ("HEALTHSTREAM_APP_ID", ".", "'.' cannot name a topic or a directory"),
        ("HEALTHSTREAM_APP_ID", "..", "'..' cannot name a topic or a directory"),
        ("HEALTHSTREAM_APP_ID", "my app/1", "' /': only letters A-Z a-z, digits"),
        ("HEALTHSTREAM_APP_ID", "a" * 201, "must be 1 to 200 characters, not 201"),
        ("HEALTHSTREAM_TOPIC_PREFIX", "cs:", "':': only letters A-Z a-z, digits"),
        ("HEALTHSTREAM_TOPIC_PREFIX", "p" * 201, "must be 0 to 200 characters, not 201"),
    ],
)
def test_an_app_id_or_topic_prefix_kafka_cannot_use_is_refused_when_the_settings_load(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    """They name topics (`{app_id}-{table}-changelog`), the consumer group and a data directory:
    an empty app id created topics named `-accounts-changelog`, then faust failed with a traceback."""
    problem = refused(monkeypatch, variable, value)
    assert problem.startswith(f"{variable}={value!r} is not valid ({says}"), problem


@pytest.mark.parametrize(
    ("app_id", "prefix"), [("healthstream", "cs."), ("a", ""), ("x" * 200, "t-1_b."), ("A.B-c_9", "..")]
)
def test_an_app_id_and_topic_prefix_of_kafkas_alphabet_are_taken(app_id: str, prefix: str) -> None:
    settings = Settings(app_id=app_id, topic_prefix=prefix)
    assert (settings.app_id, settings.topic_prefix) == (app_id, prefix)


def test_a_bad_bootstrap_reads_well_after_the_variable_and_after_the_option() -> None:
    """It said `([IPv6]:PORT; so is --bootstrap)`, which fitted neither the variable's line nor
    the option's."""
    with pytest.raises(pydantic.ValidationError) as caught:
        Settings(kafka_bootstrap="a:1,,b")
    problem = settings_problem(caught.value)
    assert problem is not None and "--bootstrap" not in problem
    assert "'' is not HOST or HOST:PORT (an IPv6 address in brackets: [::1]:9092)" in problem


@pytest.mark.parametrize(
    ("servers", "host"),
    [
        ("a..b:9092", "a..b"),
        ("k1:9092," + "k" * 64 + ".example:9092", "k" * 64 + ".example"),
        (".kafka", ".kafka"),
    ],
)
def test_a_bootstrap_host_the_resolver_cannot_encode_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, servers: str, host: str
) -> None:
    """The resolver encodes a name (IDNA) before it looks it up: an empty part or one over 63
    characters ended the worker, replay and `alerts tail` in a UnicodeError traceback."""
    problem = refused(monkeypatch, "HEALTHSTREAM_KAFKA_BOOTSTRAP", servers)
    assert problem.startswith(f"HEALTHSTREAM_KAFKA_BOOTSTRAP={servers!r} is not valid (")
    assert f"{host!r} is not a host name (a part between dots is empty or over 63 characters" in problem


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "Redis URL must specify one of the following schemes"),
        ("http://127.0.0.1:6379/0", "Redis URL must specify one of the following schemes"),
        ("redis://cache:6379/0?socket_timeout=x", "Invalid value for 'socket_timeout' in connection URL"),
        ("redis://cache:6379/0?db=-1", "the database number must be 0 or more"),
        ("redis://cache:6379/-1", "the path must be the database number (/0, /1, ...)"),
        ("redis://cache:6379/abc", "the path must be the database number (/0, /1, ...)"),
        ("redis://cache:6379/0/x", "the path must be the database number (/0, /1, ...)"),
        ("redis:///0", "no host: give redis://HOST[:PORT][/DB]"),
        ("rediss://:6380/0", "no host: give rediss://HOST[:PORT][/DB]"),
        ("redis://cache:0/0", "the port must be 1 to 65535 (redis-py takes 0 as 6379)"),
        ("redis://cache:abc/0", "Port could not be cast to integer value as 'abc'"),
        ("unix://", "a unix:// URL needs the socket's path"),
        # passed to the connection as they are: a TypeError at the first connection
        ("redis://cache:6379/0?foo=1", "redis-py has no connection option 'foo'"),
        (
            "redis://cache:6379/0?socket_timout=2",
            "redis-py has no connection option 'socket_timout' (did you mean 'socket_timeout'?)",
        ),
        ("redis://cache:6379/0?ssl_cert_reqs=none", "redis-py has no connection option 'ssl_cert_reqs'"),
    ],
)
def test_a_redis_url_redis_py_would_refuse_or_misread_is_refused_when_the_settings_load(
    monkeypatch: pytest.MonkeyPatch, url: str, says: str
) -> None:
    """redis-py refused some only when the worker connected (a traceback), and read the others as
    somewhere else: `redis:///0` as localhost:6379 (not HEALTHSTREAM_REDIS_PORT), `/abc` and `/0/x`
    as database 0, and -1 as a database whose writes waited for ever."""
    problem = refused(monkeypatch, "HEALTHSTREAM_REDIS_URL", url)
    assert problem.startswith(f"HEALTHSTREAM_REDIS_URL={url!r} is not valid ({says}"), problem


@pytest.mark.parametrize(
    "url",
    [
        "redis://cache:6379/2",
        "redis://cache",
        "redis://cache:6379/",
        "rediss://user:secret@cache.example.com:6380/3?ssl_cert_reqs=none",
        "redis://[::1]:6379/0?socket_timeout=2.5",
        "unix:///run/redis/redis.sock?db=1",
        "redis://cache:6379/0?max_connections=20&health_check_interval=30",
    ],
)
def test_a_redis_url_redis_py_reads_as_written_is_taken(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("HEALTHSTREAM_REDIS_URL", url)
    assert Settings().redis_url == url


def test_a_refused_redis_url_never_shows_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "redis://app:s3cret@cache:0/0?password=s3cret2&socket_timeout=1"
    problem = refused(monkeypatch, "HEALTHSTREAM_REDIS_URL", url)
    assert "s3cret" not in problem
    assert problem.startswith(
        "HEALTHSTREAM_REDIS_URL='redis://app:***@cache:0/0?password=***&socket_timeout=1' is not valid"
    )


@pytest.mark.parametrize(
    "name", ["healthstream_partitions", "HEALTHSTREAM_Partitions", "Healthstream_PARTITIONS"]
)
def test_a_variable_is_read_under_its_exact_name_only(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """pydantic-settings read the names in any case (the last of two spellings won), while the
    warning about unknown variables called them ignored and the local stack read them not."""
    monkeypatch.setenv(name, "abc")
    assert Settings().partitions == 4
    monkeypatch.setenv("HEALTHSTREAM_PARTITIONS", "16")
    assert Settings().partitions == 16


def test_a_view_variable_is_read_under_its_exact_name_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("healthstream_view_port", "abc")
    monkeypatch.setenv("HEALTHSTREAM_View_Token", "s3cret")
    view = ViewSettings()
    assert (view.port, view.secret) == (8000, None)
    monkeypatch.setenv("HEALTHSTREAM_VIEW_PORT", "8100")
    assert ViewSettings().port == 8100


@pytest.mark.parametrize(("value", "expected"), [("", Path(".local/worker")), ("  ", Path(".local/worker"))])
def test_an_empty_data_dir_is_the_default_as_for_the_other_variables(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: Path
) -> None:
    """An empty HEALTHSTREAM_DATA_DIR put the tables in the current folder."""
    monkeypatch.setenv("HEALTHSTREAM_DATA_DIR", value)
    assert Settings().data_dir == expected


def test_a_data_dir_under_the_home_folder_is_there(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`~/worker` made a folder named `~` in the current one."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HEALTHSTREAM_DATA_DIR", "~/worker")
    assert Settings().data_dir == tmp_path / "worker"


def test_a_view_token_read_with_its_files_line_break_is_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token from a secret file keeps the file's last line break: no header could match it."""
    monkeypatch.setenv("HEALTHSTREAM_VIEW_TOKEN", "s3cret\n")
    assert ViewSettings().secret == "s3cret"
