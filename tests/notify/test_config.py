"""The notifier's TOML: defaults, validation, one-line errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.contract.vocabulary import Severity
from streamer.notify.config import Format, NotifyConfigError, load_notify_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "notify.toml"
    path.write_text(text)
    return path


def test_minimal_destination_gets_documented_defaults(tmp_path: Path) -> None:
    config = load_notify_config(
        write(tmp_path, '[[destinations]]\nname = "ops"\nurl = "http://127.0.0.1:9/x"\n')
    )
    [ops] = config.destinations
    assert (ops.format, ops.min_severity, ops.rules, ops.digest_seconds) == (
        Format.json,
        Severity.info,
        (),
        None,
    )
    assert config.retry_for(ops).max_attempts is None  # retried until delivered


def test_bad_value_is_one_line_naming_destination_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[destinations]]\nname = "slack"\nurl = "http://h/x"\nformat = "teams"\n',
    )
    with pytest.raises(NotifyConfigError) as error:
        load_notify_config(path)
    message = str(error.value)
    assert "\n" not in message
    assert "destinations['slack'].format" in message and "'teams'" in message and str(path) in message


def test_duplicate_names_and_unknown_keys_are_refused(tmp_path: Path) -> None:
    twice = '[[destinations]]\nname = "a"\nurl = "http://h/1"\n' * 2
    with pytest.raises(NotifyConfigError, match="repeated: a"):
        load_notify_config(write(tmp_path, twice))
    with pytest.raises(NotifyConfigError, match=r"destinations\['a'\].colour: Extra inputs"):
        load_notify_config(write(tmp_path, '[[destinations]]\nname = "a"\nurl = "http://h/1"\ncolour = 1\n'))


def test_no_destination_and_bad_toml_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NotifyConfigError, match="destinations: Field required"):
        load_notify_config(write(tmp_path, ""))
    with pytest.raises(NotifyConfigError, match="not valid TOML"):
        load_notify_config(write(tmp_path, "[[destinations]\n"))
    with pytest.raises(NotifyConfigError, match="max_seconds"):
        load_notify_config(
            write(
                tmp_path,
                '[[destinations]]\nname = "a"\nurl = "http://h/1"\n'
                "[retry]\ninitial_seconds = 10\nmax_seconds = 5\n",
            )
        )


def test_a_file_that_is_not_utf8_is_refused_in_one_line_with_the_offset(tmp_path: Path) -> None:
    path = tmp_path / "notify.toml"
    path.write_bytes(b'currency = "\xe9"\n')
    with pytest.raises(NotifyConfigError) as error:
        load_notify_config(path)
    assert str(error.value) == f"notify config file {path} is not UTF-8 (byte 12 cannot be decoded)"


def refusal(tmp_path: Path, text: str) -> str:
    """The one-line message refusing the file `text`."""
    with pytest.raises(NotifyConfigError) as error:
        load_notify_config(write(tmp_path, text))
    message = str(error.value)
    assert "\n" not in message and "\r" not in message
    return message


CRM = '[[destinations]]\nname = "crm"\nurl = "http://127.0.0.1:9/x"\n'
SECRET_URL = "https://hooks.slack.com/services/T000/B000/SECRETPATH"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (  # the url forgotten: pydantic's input is the destination, headers and all
            '[[destinations]]\nname = "crm"\nheaders = { Authorization = "Bearer TOPSECRET-123" }\n',
            "destinations['crm'].url: Field required",
        ),
        (  # a misspelt key: its value is not shown
            f'{CRM}header = {{ Authorization = "Bearer TOPSECRET-123" }}\n',
            "destinations['crm'].header: Extra inputs are not permitted",
        ),
        (  # a header value that is not text
            f"{CRM}headers = {{ Authorization = 123 }}\n",
            "destinations['crm'].headers.Authorization: Input should be a valid string",
        ),
        (
            '[[destinations]]\nname = "crm"\nurl = "ftp://user:PASSWORD@host/x"\n',
            "destinations['crm'].url: URL scheme should be 'http' or 'https'",
        ),
        (  # the repeated names, not every destination's url
            f'[[destinations]]\nname = "a"\nurl = "{SECRET_URL}"\n' * 2,
            "destination names must be unique; repeated: a",
        ),
        (  # a url where the list of destinations goes
            f'destinations = "{SECRET_URL}"\n',
            "destinations: Input should be an array of tables: a [[destinations]] section for each",
        ),
        (  # a name that is not one: the destination is named by its position
            f'[[destinations]]\nname = "{SECRET_URL}"\nurl = "http://h/1"\n',
            "destinations[0].name: String should match pattern",
        ),
        (
            '[[destinations]]\nname = { token = "TOPSECRET-123" }\nurl = "http://h/1"\n',
            "destinations[0].name: Input should be a valid string",
        ),
    ],
)
def test_errors_name_the_key_and_the_problem_but_never_echo_secrets(
    tmp_path: Path, text: str, where: str
) -> None:
    message = refusal(tmp_path, text).replace(str(tmp_path), "")
    assert where in message
    for secret in ("TOPSECRET", "PASSWORD", "SECRETPATH", "123"):
        assert secret not in message


def test_values_that_are_not_secret_are_still_shown(tmp_path: Path) -> None:
    message = refusal(tmp_path, f'{CRM}rate_per_minute = -1\nmin_severity = "loud"\n[retry]\njitter = 2\n')
    assert (
        "destinations['crm'].rate_per_minute: Input should be greater than or equal to 0.01 (got -1)"
        in message
    )
    assert (
        "destinations['crm'].min_severity: Input should be 'info', 'warning' or 'critical' (got 'loud')"
        in (message)
    )
    assert "retry.jitter: Input should be less than or equal to 1 (got 2)" in message


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        (r'{ "X-A" = "a\r\nInjected: 1" }', "'X-A'"),
        (r'{ "X-A" = "a\nInjected: 1" }', "'X-A'"),
        (r'{ Authorization = "Bearer x\u0000y" }', "'Authorization'"),
        (r'{ "X-A" = "a\u007fb" }', "'X-A'"),
        (r'{ "X-A" = "a\u0085b" }', "'X-A'"),  # a C1 control
        (r'{ "X-A\r\nInjected" = "1" }', r"'X-A\r\nInjected'"),
        (r'{ "X A" = "1" }', "'X A'"),
        (r'{ "X:A" = "1" }', "'X:A'"),
        (r'{ "" = "1" }', "''"),
    ],
)
def test_a_header_http_forbids_is_refused_at_load_naming_it_not_its_value(
    tmp_path: Path, headers: str, named: str
) -> None:
    message = refusal(tmp_path, f"{CRM}headers = {headers}\n")
    assert "destinations['crm'].headers" in message and named in message
    assert "Injected: 1" not in message and "Bearer" not in message


@pytest.mark.parametrize(
    "name", ["Idempotency-Key", "idempotency-key", "Content-Type", "content-length", "Host"]
)
def test_a_header_the_notifier_sets_is_refused_at_load(tmp_path: Path, name: str) -> None:
    """A destination's own Idempotency-Key would be the same on every message: a receiver that
    dedupes on it would keep the first alert and drop every later one as a duplicate."""
    message = refusal(tmp_path, f'{CRM}headers = {{ "{name}" = "fixed" }}\n')
    assert "destinations['crm'].headers" in message
    assert f"header {name!r} is set by the notifier for every message" in message
    assert "fixed" not in message


def test_two_spellings_of_one_header_are_refused_at_load(tmp_path: Path) -> None:
    message = refusal(
        tmp_path, f'{CRM}headers = {{ Authorization = "Bearer a", authorization = "Bearer b" }}\n'
    )
    assert "headers 'Authorization' and 'authorization' are the same header" in message
    assert "Bearer" not in message


def test_headers_http_allows_are_kept(tmp_path: Path) -> None:
    config = load_notify_config(
        write(tmp_path, f'{CRM}headers = {{ Authorization = "Bearer a\\tb", "X-Name_1.~" = "Zoë" }}\n')
    )
    assert config.destinations[0].headers == {"Authorization": "Bearer a\tb", "X-Name_1.~": "Zoë"}


def test_a_misspelt_rule_is_refused_with_the_rule_it_resembles(tmp_path: Path) -> None:
    # A rule no alert has made its destination receive nothing, without a word.
    base = '[[destinations]]\nname = "a"\nurl = "http://h/1"\n'
    with pytest.raises(
        NotifyConfigError, match=r"unknown alert rule 'band_worsend' \(did you mean 'band_worsened'\?\)"
    ):
        load_notify_config(write(tmp_path, base + 'rules = ["band_worsend"]\n'))
    with pytest.raises(NotifyConfigError, match="unknown alert rule 'nope'; rules are band_worsened, "):
        load_notify_config(write(tmp_path, base + 'rules = ["nope"]\n'))
    [ok] = load_notify_config(write(tmp_path, base + 'rules = ["payment_failed"]\n')).destinations
    assert ok.rules == ("payment_failed",)


@pytest.mark.parametrize(
    "line",
    [
        "rate_per_minute = inf",
        "rate_per_minute = nan",
        "burst = 1e9",
        'url = "http://h/a\\r\\nX: y"',
        'url = "http:///hook"',  # read as host "hook"
        'url = "http://h:1\\\\@evil.example/"',  # a backslash read as "/"
        'url = "http://h:0/hook"',  # every attempt fails, retried for ever
        "rate_per_minute = 5e-324",  # 0 a second once divided: the notifier stopped at its start
        "timeout_seconds = 1e-9",  # no request could be answered in time: retried for ever
    ],
)
def test_infinite_rates_and_urls_the_parser_would_rewrite_are_refused(tmp_path: Path, line: str) -> None:
    text = '[[destinations]]\nname = "a"\n' + ("" if line.startswith("url") else 'url = "http://h/1"\n')
    with pytest.raises(NotifyConfigError, match=line.split(" ")[0]):
        load_notify_config(write(tmp_path, text + line + "\n"))


def test_toml_nested_too_deeply_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(NotifyConfigError, match="nested too deeply") as error:
        load_notify_config(write(tmp_path, "x = " + "[" * 5000 + "]" * 5000 + "\n"))
    assert "\n" not in str(error.value)


def test_credentials_in_the_url_and_an_authorization_header_are_refused_at_load(tmp_path: Path) -> None:
    """aiohttp refuses to send such a request: every alert to the destination was rejected."""
    text = '[[destinations]]\nname = "crm"\nurl = "http://user:pw@127.0.0.1:9/hook"\n'
    message = refusal(tmp_path, text + 'headers = { authorization = "Bearer s3cret" }\n')
    assert "the URL holds credentials (user:password@) and headers set Authorization too" in message
    assert "s3cret" not in message and "pw" not in message
    assert load_notify_config(write(tmp_path, text)).destinations[0].url.username == "user"  # either alone


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("rate_per_minute = true", "rate_per_minute"),
        ('burst = "5"', "burst"),
        ('digest_seconds = "60"', "digest_seconds"),
        ("burst = 5.0", "burst"),
        ("timeout_seconds = false", "timeout_seconds"),
        ('retry = { max_attempts = "3" }', "retry.max_attempts"),
    ],
)
def test_a_number_of_the_wrong_type_is_refused_not_converted(tmp_path: Path, line: str, key: str) -> None:
    """`rate_per_minute = true` read as 1.0 and `burst = "5"` as 5, as the score config no longer does."""
    path = write(tmp_path, f'[[destinations]]\nname = "a"\nurl = "http://h/1"\n{line}\n')
    with pytest.raises(NotifyConfigError, match=rf"destinations\['a'\]\.{key}: Input should be a valid"):
        load_notify_config(path)


def test_a_whole_number_is_taken_where_a_float_belongs(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[destinations]]\nname = "a"\nurl = "http://h/1"\nrate_per_minute = 30\ndigest_seconds = 60\n',
    )
    [destination] = load_notify_config(path).destinations
    assert (destination.rate_per_minute, destination.digest_seconds) == (30.0, 60.0)


@pytest.mark.parametrize(
    "host",
    ["hooks..example.com", "a" * 64 + ".example.com", ".example.com"],
)
def test_a_webhook_host_that_cannot_be_encoded_is_refused_with_its_key(tmp_path: Path, host: str) -> None:
    """The resolver encodes the host (IDNA) before it looks it up: every alert to such a URL failed
    with a UnicodeError, was given up on and committed as if it had been delivered."""
    message = refusal(
        tmp_path, f'[[destinations]]\nname = "dots"\nurl = "https://user:PASSWORD@{host}/SECRETPATH"\n'
    )
    assert f"destinations['dots'].url: the URL's host {host!r} is not a host name" in message
    assert "PASSWORD" not in message and "SECRETPATH" not in message


def test_a_webhook_host_the_resolver_can_encode_is_taken(tmp_path: Path) -> None:
    hosts = ["hooks.example.com.", "bücher.example", "[::1]", "127.0.0.1", "a" * 63 + ".example.com"]
    text = "".join(f'[[destinations]]\nname = "d{i}"\nurl = "http://{h}/x"\n' for i, h in enumerate(hosts))
    assert len(load_notify_config(write(tmp_path, text)).destinations) == len(hosts)


def test_a_destinations_retry_overrides_only_the_keys_it_sets(tmp_path: Path) -> None:
    """It replaced `[retry]` whole: `retry = {max_attempts = 5}` reset initial_seconds to 1 and
    max_seconds to 300, which the file never said."""
    text = f"{CRM}retry = {{ max_attempts = 5 }}\n[retry]\ninitial_seconds = 30\nmax_seconds = 3600\n"
    config = load_notify_config(write(tmp_path, text))
    retry = config.retry_for(config.destinations[0])
    assert (retry.initial_seconds, retry.max_seconds, retry.max_attempts) == (30.0, 3600.0, 5)


def test_a_destinations_retry_is_checked_against_the_keys_it_inherits(tmp_path: Path) -> None:
    """`retry = {initial_seconds = 600}` under `[retry] max_seconds = 3600` was refused naming a
    max_seconds of 300 the file never set."""
    text = f"{CRM}retry = {{ initial_seconds = 600 }}\n[retry]\nmax_seconds = 3600\n"
    config = load_notify_config(write(tmp_path, text))
    assert config.retry_for(config.destinations[0]).initial_seconds == 600.0
    message = refusal(tmp_path, f"{CRM}retry = {{ initial_seconds = 3000 }}\n[retry]\nmax_seconds = 2000\n")
    assert "destinations['crm'].retry: " in message and "max_seconds (2000.0)" in message


def test_a_bad_global_retry_is_named_once_not_again_for_each_destination(tmp_path: Path) -> None:
    message = refusal(tmp_path, f"{CRM}retry = {{ max_attempts = 5 }}\n[retry]\njitter = 2\n")
    assert message.count("jitter") == 1 and "retry.jitter:" in message


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            f"{CRM}min_severty = 'critical'\n",
            "destinations['crm'].min_severty: Extra inputs are not permitted (did you mean 'min_severity'?)",
        ),
        (
            f"{CRM}retry = {{ max_atempts = 3 }}\n",
            "destinations['crm'].retry.max_atempts: Extra inputs are not permitted "
            "(did you mean 'max_attempts'?)",
        ),
        (
            f"{CRM}[retry]\ninitial_second = 3\n",
            "retry.initial_second: Extra inputs are not permitted (did you mean 'initial_seconds'?)",
        ),
        (
            f"max_inflight = 3\n{CRM}",
            "max_inflight: Extra inputs are not permitted (did you mean 'max_in_flight'?)",
        ),
    ],
)
def test_a_misspelt_key_is_refused_with_the_key_it_resembles(tmp_path: Path, text: str, says: str) -> None:
    """As the score configuration does: `min_severty` said only "Extra inputs are not permitted"."""
    assert refusal(tmp_path, text).endswith(f" is invalid: {says}")


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (
            "max_in_flight = 10",
            "destinations['crm'].max_in_flight: is not a destination's key: set it once, at the top of "
            "the file (before any [[destinations]]), for every destination",
        ),
        (
            "max_attempts = 3",
            "destinations['crm'].max_attempts: is not a destination's key: set it in [retry], or in "
            "this destination's retry = { max_attempts = ... }",
        ),
    ],
)
def test_a_key_set_in_the_wrong_table_says_where_it_goes(tmp_path: Path, line: str, says: str) -> None:
    assert refusal(tmp_path, f"{CRM}{line}\n").endswith(f" is invalid: {says}")


def test_a_list_given_as_text_is_asked_for_in_toml_terms(tmp_path: Path) -> None:
    """`owners = "a@x"` said "Input should be a valid tuple", a word TOML does not have."""
    message = refusal(tmp_path, f'{CRM}owners = "a@x"\nrules = "silence"\n')
    assert (
        """destinations['crm'].owners: Input should be a list of strings, e.g. ["a", "b"] (got 'a@x')"""
        in message
    )
    assert "destinations['crm'].rules: Input should be a list of strings" in message
    assert "tuple" not in message


def test_max_digest_alerts_without_digest_seconds_is_refused(tmp_path: Path) -> None:
    """It did nothing: without digest_seconds every alert is a message of its own."""
    message = refusal(tmp_path, f"{CRM}max_digest_alerts = 10\n")
    assert message.endswith(
        " is invalid: destinations['crm']: max_digest_alerts applies to digests only: "
        "set digest_seconds too, or leave it out"
    )
    [crm] = load_notify_config(
        write(tmp_path, f"{CRM}max_digest_alerts = 10\ndigest_seconds = 60\n")
    ).destinations
    assert crm.max_digest_alerts == 10
