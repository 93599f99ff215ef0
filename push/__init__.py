"""The push client: ``importer push SLUG FILE`` streams a CSV, NDJSON or JSON file to the
import API in idempotent chunks and writes ``results.csv`` and ``errors.csv`` next to it.

An integrator needs only this and the ``client`` extra (``pip install '.[client]'``:
requests, ijson, rich); the server never imports it. Its settings are its own
(:mod:`push.settings`): where the service is and the key to send.
"""
