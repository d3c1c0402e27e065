"""Built-in drivers, one module per protocol: ``modbus``, ``opcua`` and ``virtual``.

Each is chosen by the Device's ``spec.protocol.protocolName`` through
:class:`devices.driver.Registry`; a third-party package adds another with an entry point in the
``edgebridge.drivers`` group (see ``docs/drivers.md``).
"""
