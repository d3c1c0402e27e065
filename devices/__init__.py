"""Device mappers: programs that sit next to a device and speak KubeEdge's MQTT twin protocol.

A mapper is an ordinary MQTT client of the edge broker, not part of edgecore: it reports the
device's values to ``$hw/events/device/{id}/twin/update`` and applies desired values it receives
on ``.../twin/update/delta``. :mod:`devices.mapper` is the generic half, :mod:`devices.driver`
the boundary, :mod:`devices.drivers` the device-specific halves. Run one with
``python -m devices --device thermostat-1``.
"""
