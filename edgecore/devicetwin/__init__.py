"""Device twins on the edge: KubeEdge's MQTT twin protocol, merge rules, a durable outbox.

- :mod:`wire.twin` — versions, the pure merge rules (converge in any order) and KubeEdge's
  MQTT twin payloads, shared with the mapper and the cloud.
- :mod:`wire.devicemodel` — a value against its DeviceModel property (pure).
- :mod:`edgecore.devicetwin.store` — the ``device``, ``device_twin`` and ``outbox`` tables.
- :mod:`edgecore.devicetwin.module` — the ``twin`` hive module: loop, group commit, publishing.
- :mod:`edgecore.devicetwin.mqtt_handlers` — where a mapper's MQTT request enters.
- :mod:`edgecore.devicetwin.desired` — where the cloud's Devices and DeviceModels enter.
- :mod:`edgecore.devicetwin.state` — the committed twin in memory, and the batch being staged.
- :mod:`edgecore.devicetwin.uplink` — where upstream messages leave (the outbox sender).
"""
