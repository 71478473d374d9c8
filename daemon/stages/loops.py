"""The loop rule: a mail that answers one of our automatic mails, from an address we never wrote to, is
recorded on the ticket of the mail it answers and is not answered automatically. It answers it when its
In-Reply-To/References name that mail's Message-ID, or, from a sender who takes no part in the ticket, when its
subject is that mail's exact subject behind reply prefixes (a robot that drops the threading headers).

That is the loop the per-address caps cannot see: another ticket system (FreeScout #2445, osTicket #6380)
answering each of our receipts from a new ``reply+<n>@`` address and without RFC 3834 headers, so every answer
looked like a new customer's first mail and got a receipt of its own. Only someone who received our mail can
name its Message-ID; an address that did not receive it is either such a robot or a person the mail was
forwarded to. Both are handled the same safe way: nothing automatic goes back, the mail is kept on the ticket
it answers (its sender does not become a participant, so it receives nothing later either), the ticket's
agents are told as for any customer reply and answer by hand if a person wrote, and the admin hears once an
hour per sending domain. Peers do the same in other ways (DESIGN.md, "Loops").
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from ticketd.daemon.outgoing import notify, outbox, storm
from ticketd.daemon.stages.conversation import Incoming, Outcome, event, message_context, record_message
from ticketd.parsers.message import ParsedMail
from ticketd.parsers.quotes import strip_reply
from ticketd.parsers.subject import SubjectInfo
from ticketd.rules.identify import Sender
from ticketd.rules.match import Match, follow_merges
from ticketd.rules.screen import Screening, Verdict
from ticketd.storage.models import Outbox, Ticket

RULE = "answers_our_automatic_mail"


@dataclass(frozen=True)
class Loop(Screening):
    answered: Outbox | None = None  # the automatic mail of ours it answers


def answers_us_automatically(session: Session, mail: ParsedMail, subject: SubjectInfo, sender: Sender,
                             screening: Screening, match: Match, answered: Outbox | None) -> Loop | None:
    """The loop rule's verdict for a customer's mail (agents and mail already screened out are not asked):
    ``answered`` is the automatic mail its threading headers name; without them, the one whose exact subject it
    repeats on the ticket its tag names, when it matched no ticket of its own."""
    if sender.agent is not None or screening.verdict is not Verdict.CONTINUE:
        return None
    quoted = answered is None
    if quoted and match.ticket is None:
        answered = storm.automatic_mail_quoted(session, mail.subject, subject.ticket_number)
    if answered is None or storm.ever_wrote_to(session, sender.address.email):
        return None
    how = "quotes the subject of" if quoted else "answers"
    return Loop(Verdict.NO_AUTOREPLY, RULE, f"{how} our automatic {answered.kind!r} mail "
                f"{answered.message_id} from {sender.address.email}, an address we never wrote to", answered)


def record_unanswered(inc: Incoming) -> Outcome:
    """Keep the mail on the conversation it answers, tell its agents and the admin; send nothing back."""
    assert isinstance(inc.screening, Loop) and inc.screening.answered is not None
    answered = inc.screening.answered
    reason = inc.screening.reason or RULE
    sender = inc.sender.address.email
    domain = sender.rsplit("@", 1)[-1]
    thread = inc.session.get(Ticket, answered.ticket_id) if answered.ticket_id is not None else None
    outbox.alert_admin(inc.session, inc.config, f"automatic answers stopped for {domain}", (
        f"{reason}.\nIt is not answered automatically: another ticket system or an auto-responder answering "
        "our receipts from a new address each time would otherwise loop. "
        + (f"It is recorded on ticket id {thread.id}." if thread else "It is not recorded on any ticket.")))
    if thread is None:
        return Outcome("dropped", reason=f"{RULE}: {reason}; no ticket to record it on")
    ticket = follow_merges(inc.session, thread)
    text = strip_reply(inc.mail.text).replace("\r\n", "\n")
    _, files = record_message(inc, thread, "customer", text, is_reply=True)
    event(inc, ticket, "not-answered", new=reason[:500])
    notify.to_agents(inc.session, inc.config, ticket, notify.agents_to_notify(inc.session, ticket), "agent_update",
                     {"message": message_context(inc, text), "thanks": False}, cause="inbound",
                     conversation=thread, files=files)
    return Outcome("done", ticket.number, reason=f"recorded, not answered: {reason}", ticket_id=ticket.id)
