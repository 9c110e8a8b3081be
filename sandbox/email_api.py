"""A transactional-email stand-in: ``POST /email/send``.

The ``Idempotency-Key`` header dedupes: the same key answers the same id and
sends nothing more. Sent emails appear under ``emails`` in the ledger.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from fastapi import APIRouter, Header
from pydantic import BaseModel, ConfigDict, Field

from sandbox.state import StateDep, new_id, rfc3339

router = APIRouter(prefix="/email", tags=["email"])


class EmailIn(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from", min_length=1)
    to: str | list[str]
    subject: str
    text: str
    html: str | None = None
    tags: dict[str, str] | None = None


class EmailSent(BaseModel):
    id: str


@dataclass
class EmailStore:
    # idempotency key → email id
    by_key: dict[str, str] = field(default_factory=dict)


@router.post("/send")
async def send_email(
    email: EmailIn,
    state: StateDep,
    idempotency_key: str | None = Header(default=None),
) -> EmailSent:
    store = state.store(EmailStore)
    if idempotency_key and idempotency_key in store.by_key:
        return EmailSent(id=store.by_key[idempotency_key])
    email_id = new_id("em")
    if idempotency_key:
        store.by_key[idempotency_key] = email_id
    state.ledger.put(
        "emails",
        email_id,
        {
            "status": "sent",
            "from": email.from_,
            "to": [email.to] if isinstance(email.to, str) else email.to,
            "subject": email.subject,
            "text": email.text,
            "html": email.html,
            "tags": email.tags or {},
            "idempotency_key": idempotency_key,
            "created": rfc3339(time.time()),
        },
    )
    return EmailSent(id=email_id)
