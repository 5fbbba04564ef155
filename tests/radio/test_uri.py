"""open_radio(URI): configs and the command line name radios the same way everywhere.

tests/conftest.py calls forget_airs() around every test, so named airs never leak between tests.
"""

from __future__ import annotations

import numpy as np
import pytest

from airfl.radio import AirConfig, ChannelConfig, LoopbackAir, LoopbackRadio, forget_airs, loopback_air, open_radio


def test_loopback_uri_opens_a_radio_on_the_named_air():
    """loopback://bench/client0 is the radio 'client0' on the in-process air 'bench'."""
    radio = open_radio("loopback://bench/client0")
    assert isinstance(radio, LoopbackRadio)
    assert radio.name == "client0"
    assert radio.air is loopback_air("bench")


def test_two_radios_share_one_air():
    """Radios opened on the same air name share one medium (one air object, one clock)."""
    a = open_radio("loopback://bench/client0")
    s = open_radio("loopback://bench/server")
    assert a.air is s.air
    assert open_radio("loopback://bench/client0") is a


def test_radios_on_the_same_air_hear_each_other_and_other_airs_do_not():
    """A burst on air 'bench' reaches 'bench' radios only, not a radio of the same name on another air."""
    loopback_air("bench", AirConfig(channel=ChannelConfig(fading="none")))
    loopback_air("lab", AirConfig(channel=ChannelConfig(fading="none")))
    open_radio("loopback://bench/client0").transmit(np.ones(8), 0)
    assert np.all(np.abs(open_radio("loopback://bench/server").receive(8, 0)) > 0.99)
    assert np.all(open_radio("loopback://lab/server").receive(8, 0) == 0)


def test_empty_air_name_is_the_default_air():
    """loopback:///radio uses the air called 'default'; the scheme is case-insensitive."""
    assert open_radio("loopback:///r1").air is loopback_air("default")
    assert open_radio("LOOPBACK://bench/r2").air is loopback_air("bench")


def test_loopback_air_config_creates_or_replaces():
    """loopback_air(name, config) installs a new air with that config; without config it is reused."""
    first = loopback_air("bench")
    assert loopback_air("bench") is first
    replaced = loopback_air("bench", AirConfig(seed=5))
    assert replaced is not first and replaced.config.seed == 5
    assert open_radio("loopback://bench/c").air is replaced


def test_forget_airs_isolates():
    """forget_airs() drops every named air: the next open creates a fresh one with a fresh clock."""
    radio = open_radio("loopback://bench/c")
    radio.receive(10, 0)
    forget_airs()
    again = open_radio("loopback://bench/c")
    assert again.air is not radio.air
    assert isinstance(again.air, LoopbackAir) and again.now() == 0


@pytest.mark.parametrize(
    "uri",
    ["loopback://bench", "loopback://bench/", "loopback://bench/a/b", "loopback:bench/client0"],
)
def test_loopback_uri_must_name_one_radio(uri):
    """A loopback URI without exactly one radio name is refused with the accepted form and an example."""
    with pytest.raises(ValueError, match=r"loopback://AIR/RADIO") as info:
        open_radio(uri)
    assert "loopback://bench/client0" in str(info.value)
    assert repr(uri) in str(info.value)


@pytest.mark.parametrize("uri", ["", "client0", "nosuchscheme://x/y", "http://bench/client0"])
def test_unknown_scheme_is_refused_helpfully(uri):
    """An unknown or missing scheme is a ValueError that quotes the URI and names the accepted form."""
    with pytest.raises(ValueError, match=r"loopback://AIR/RADIO") as info:
        open_radio(uri)
    assert repr(uri) in str(info.value)


def test_reopening_a_closed_radio_gives_a_working_radio():
    """After close(), open_radio() with the same URI returns a radio that can transmit again."""
    radio = open_radio("loopback://bench/client0")
    radio.close()
    again = open_radio("loopback://bench/client0")
    again.transmit(np.ones(4), 0)
    assert again.air.samples_transmitted == 4
