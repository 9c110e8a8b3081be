"""Provider webhooks, one module per provider; each answers 2xx only once the event is committed.

A redelivery answers 2xx and changes nothing (the inbox is unique per provider
event); a bad signature answers 401 and records nothing.
"""
