"""Who may use the embedded broker, and for what: the fleet's own user, and each provisioned device confined
to its own topics (the same rules `edgeml fleet provision` writes into Mosquitto's ACL file).

amqtt 0.12 loads plugins named in its `plugins` config section (dotted path -> its `Config` dataclass);
FleetAuthPlugin answers `authenticate`, FleetTopicPlugin answers `topic_filtering` for publish, subscribe
and receive. Both consult one BrokerAuthority, handed to them through their Config.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import Any, Callable

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

from edgeml.protocol import DEVICE_PUBLISHES, DEVICE_SUBSCRIBES, Topics, valid_device_id

from .provision import FLEET_USERNAME, RESERVED_PREFIX, verify_mosquitto_hash

log = logging.getLogger("edgeml.fleet")
CredentialLookup = Callable[[str], "str | None"]  # device id -> its stored credentials hash (None: not provisioned)


class BrokerAuthority:
    """The embedded broker's rules. A device's username is its id and must also be its client id (as
    Mosquitto's `use_username_as_clientid`), so no client can take over another device's session."""

    def __init__(self, topics: Topics, fleet_password: str, credentials: CredentialLookup) -> None:
        self.topics, self._fleet_password, self._credentials = topics, fleet_password, credentials

    def authenticate(self, username: str | None, password: str | None, client_id: str | None,
                     will_topic: str | None) -> bool:
        if not username:
            return False  # anonymous: only with --insecure-broker, which does not load these plugins
        if username == FLEET_USERNAME:
            return hmac.compare_digest((password or "").encode(), self._fleet_password.encode())
        if not valid_device_id(username) or username.startswith(RESERVED_PREFIX) or client_id != username:
            return False
        if will_topic is not None and not self.may_publish(username, will_topic):
            return False  # a Last Will on another device's topic would forge its status
        try:
            hashed = self._credentials(username)
        except Exception:  # a database hiccup refuses this connection, never crashes the broker
            log.exception("cannot read the credentials of %s", username)
            return False
        return bool(hashed) and verify_mosquitto_hash(password or "", hashed)

    def may_publish(self, username: str | None, topic: str) -> bool:
        return username == FLEET_USERNAME or topic in self._own(username, DEVICE_PUBLISHES)

    def may_subscribe(self, username: str | None, topic_filter: str) -> bool:
        return username == FLEET_USERNAME or topic_filter in self._own(username, DEVICE_SUBSCRIBES)

    def _own(self, device_id: str | None, kinds: tuple[str, ...]) -> set[str]:
        if not device_id:
            return set()
        return {self.topics.device(device_id, kind) for kind in kinds}


class FleetAuthPlugin(BaseAuthPlugin):
    @dataclass
    class Config:
        authority: Any = None  # a BrokerAuthority

    async def authenticate(self, *, session: Any) -> bool:
        authority: BrokerAuthority = self.context.config.authority
        will = session.will_topic if session.will_flag else None
        ok = authority.authenticate(session.username, session.password, session.client_id, will)
        if not ok:
            log.warning("embedded broker refused %s (client id %s) from %s", session.username or "an anonymous client",
                        session.client_id, session.remote_address)
        return ok


class FleetTopicPlugin(BaseTopicPlugin):
    @dataclass
    class Config:
        authority: Any = None  # a BrokerAuthority

    async def topic_filtering(self, *, session: Any = None, topic: str | None = None, action: Action | None = None) -> bool:
        authority: BrokerAuthority = self.context.config.authority
        username = session.username if session else None
        if not topic:
            return False
        if action == Action.PUBLISH:
            return authority.may_publish(username, topic)
        return authority.may_subscribe(username, topic)  # SUBSCRIBE and RECEIVE


def plugin_config(authority: BrokerAuthority) -> dict[str, Any]:
    """amqtt's `plugins` section for an authenticated broker."""
    return {f"{__name__}.FleetAuthPlugin": {"authority": authority},
            f"{__name__}.FleetTopicPlugin": {"authority": authority}}
