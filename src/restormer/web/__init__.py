"""``restormer serve``: a local web page to restore photos, and the HTTP API behind it.

Needs the ``web`` extra (``pip install 'restormer[web]'``: FastAPI, uvicorn,
python-multipart). :mod:`restormer.web.jobs` is the queue and workers, free of HTTP;
:mod:`restormer.web.app` the routes; ``static/`` the page (plain HTML, CSS and JavaScript,
served from the package: nothing is fetched from elsewhere).
"""
