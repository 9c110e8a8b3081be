"""The core every other package shares, importing none of them.

Settings (``settings``), workflow messages (``messages``, one module per
process), enums (``enums``), money (``money``), rate choice (``shipping``),
business ids and keys (``ids``), the payload codec (``codec``), signatures
(``signatures``), the Temporal client and search attributes (``temporal``),
business failure types (``errors``), logging (``logs``) and the public order
view (``views``).
"""
