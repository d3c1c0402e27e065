"""Device twins on the edge: KubeEdge's MQTT twin protocol, merge rules, a durable outbox.

- :mod:`edgecore.devicetwin.merge` — versions and the pure merge rules (converge in any order).
- :mod:`wire.devicemodel` — a value against its DeviceModel property (pure).
- :mod:`edgecore.devicetwin.payloads` — KubeEdge's MQTT twin payloads, in and out.
- :mod:`edgecore.devicetwin.store` — the ``device``, ``device_twin`` and ``outbox`` tables.
- :mod:`edgecore.devicetwin.module` — the ``twin`` hive module that ties them together.
"""
