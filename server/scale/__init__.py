"""clicksam on Ray (the optional ``clicksam[ray]`` extra): a local or joined cluster bound to loopback where
it must be (``cluster``), the encoder replicas behind the same FastAPI app (``serving``) and the embedding
cache the replicas share (``shared_cache``). Nothing here is imported unless ``--engine ray`` is asked for.
"""
