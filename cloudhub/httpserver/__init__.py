"""cloudhub's HTTPS port (10002): the join endpoints KubeEdge edgecores call (``/ca.crt``,
``/edge.crt``) and edgebridge's admin API (``/admin/v1/...``) that ``edgectl`` drives.

One port for both keeps the firewall story the same as KubeEdge's; the admin API is guarded by
its own bearer credential, separate from join tokens. See :mod:`cloudhub.httpserver.app`.
"""
