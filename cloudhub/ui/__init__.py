"""The fleet page, ``https://HOST:10002/ui/``: server-rendered HTML for operators.

:mod:`cloudhub.ui.pages` has the handlers, :mod:`cloudhub.ui.session` the login (admin token
once, then a cookie), :mod:`cloudhub.ui.rows` the pure shaping of what a page shows. Templates
and static files ship inside the package: no build step, nothing fetched from elsewhere.
"""
