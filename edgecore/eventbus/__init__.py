"""eventbus: MQTT between local devices (mappers) and the device twin.

- :mod:`edgecore.eventbus.topics` — KubeEdge's twin/state/membership topics: the subscriptions,
  :func:`~edgecore.eventbus.topics.parse`, and builders for the answers (pure).
- :mod:`edgecore.eventbus.mqtt` — a small MQTT 3.1.1 client: pure codec plus one asyncio
  protocol, built for throughput (one ``send`` per loop iteration).
- :mod:`edgecore.eventbus.broker` — :class:`~edgecore.eventbus.broker.Mosquitto`, the local
  broker of internal mode, configured, started and restarted by edgecore.
- :mod:`edgecore.eventbus.module` — :class:`~edgecore.eventbus.module.EventBus`, the hive module:
  MQTT messages to the twin, the twin's publishes to MQTT.
"""
