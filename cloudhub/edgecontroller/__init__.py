"""edgecontroller: turns store changes into what each edge node must hold.

:mod:`cloudhub.edgecontroller.binding` decides which objects reach which node (pure);
the rest of the package feeds it from the store and hands its changes to delivery.
"""
