"""The app's domain, with no UI: four packages by concern and a composition root.

Dependencies point one way: ``chat`` -> ``kvcache`` -> ``inference``; ``chat`` and ``kvcache`` also
read ``documents``, which imports none of them. ``config`` is a leaf every package may read;
``layout`` versions and migrates the data dir, ``admin`` backs it up and restores it, ``disk`` keeps free space for chats, ``redis_server`` runs
the embedded Redis;
``services`` builds everything once and is imported by nothing in ``backend``. No module imports
gradio (``tests/test_architecture.py`` checks both rules).
"""
