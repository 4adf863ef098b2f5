"""The server side: which policy governs a ref (``policies``), the facts of a push read
in batches (``facts``), judging an update (``judge``), the hooks' and ``verify``'s entry
points (``hooks``) and installing the hooks (``install``)."""
