"""The ``certcontroller`` module: node certificate renewal over the live link, and revocation
of deleted nodes. See :mod:`cloudhub.certcontroller.controller`."""
