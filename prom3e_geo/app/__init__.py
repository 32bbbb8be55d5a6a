"""The browser explorer behind `prom3e-geo serve`: a thin web layer over the map workflows.

`explorer.Explorer` keeps one `workflows.maps.MapSession` (store, model, towers) and the layers
made from it; `server.create_app` is its Starlette app; `maplayers` draws a layer for the web
map; `uploads` checks what a browser sends. The page (`static/`; `recorder.js` is the
AudioWorklet that takes a recording's samples, written into a WAV file in the page) uses
Leaflet, vendored from its npm package with its licence (`static/vendor/leaflet/LICENSE`);
nothing is loaded from a CDN. Nothing below this package imports it.
"""
