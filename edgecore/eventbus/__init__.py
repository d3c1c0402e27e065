"""eventbus: MQTT between local devices (mappers) and the device twin.

- :mod:`wire.topics` (shared with the twin) — KubeEdge's twin/state/membership topics: the
  subscriptions, :func:`~wire.topics.parse`, and builders for the answers (pure).
- :mod:`edgecore.eventbus.mqtt` — paho-mqtt driven by the event loop (no extra thread, manual
  acks so a slow twin applies back-pressure through the broker).
- :mod:`edgecore.eventbus.broker` — :class:`~edgecore.eventbus.broker.Mosquitto`, the local
  broker of internal mode, configured, started and restarted by edgecore.
- :mod:`edgecore.eventbus.module` — :class:`~edgecore.eventbus.module.EventBus`, the hive module:
  MQTT messages to the twin, the twin's publishes to MQTT.
"""
