"""The device mapper: serves the real devices bound to an edge over KubeEdge's MQTT twin protocol.

A mapper is an ordinary MQTT client of the edge broker, not part of edgecore. One process
(:mod:`devices.mapper`) serves every Device bound to its edge that it has a driver for, reading
them from the edge local API (:mod:`devices.source`) and sharing one broker connection
(:mod:`devices.link`); each device is a :mod:`devices.worker` around pure decisions
(:mod:`devices.state`). Drivers (:mod:`devices.driver`, :mod:`devices.drivers`) are the only
protocol-specific code: Modbus TCP/RTU, OPC UA and a simulated thermostat built in, more through
the ``edgebridge.drivers`` entry points. Run it with ``python -m devices``.
"""
