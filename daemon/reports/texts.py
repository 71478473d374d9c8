"""Every word the report workbook shows, in English and Turkish.

One flat dict per language with the same keys, so a missing translation is a failing test rather than an English
word in a Turkish workbook. Codes stored in the database (states, types, priorities) are translated for reading;
categories are the operator's own words and are shown as configured.
"""

from __future__ import annotations

EN: dict[str, str] = {
    "sheet.tickets": "Tickets", "sheet.monthly": "Monthly", "sheet.categories": "Top categories",
    "sheet.companies": "Companies", "sheet.customers": "Customers", "sheet.sla": "SLA",
    "sheet.satisfaction": "Satisfaction", "sheet.agents": "Agents", "sheet.charts": "Charts", "sheet.about": "About",
    "sheet.stages": "Stages", "stage": "Stage", "stage.now_in": "In it now", "stage.entered": "Entered",
    "stage.total_hours": "Business hours in it",
    "col.number": "Number", "col.subject": "Subject", "col.state": "State", "col.type": "Type",
    "col.category": "Category", "col.priority": "Priority", "col.source": "Source", "col.requester": "Requester",
    "col.requester_name": "Requester name", "col.company": "Company", "col.assignee": "Assignee",
    "col.group": "Group", "col.created_at": "Opened", "col.month": "Month",
    "col.first_response_due": "First response due", "col.first_response_at": "First response",
    "col.resolution_due": "Resolution due", "col.resolution_at": "Resolved", "col.closed_at": "Closed",
    "col.within_contract": "Within contract", "col.root_cause": "Root cause", "col.action_plan": "Action plan",
    "col.cost": "Cost", "col.resolution": "Resolution", "col.satisfaction": "Satisfaction",
    "col.first_response_hours": "First response (business h)", "col.resolution_hours": "Resolution (business h)",
    "col.first_response_met": "First response met", "col.resolution_met": "Resolution met",
    "yes": "Yes", "no": "No", "none": "-", "total": "Total", "whole_period": "Whole period",
    "month": "Month", "type": "Type", "category": "Category", "category.none": "(none)",
    "rank": "Rank", "tickets": "Tickets", "share": "Share", "company": "Company", "customer": "Customer",
    "complaints": "Complaints", "open": "Open", "resolution_met": "Resolution met",
    "resolution_missed": "Resolution missed", "resolution_met_share": "Resolution met %",
    "satisfied_share": "Satisfied %", "measure": "Measure", "first_response": "First response",
    "resolution": "Resolution", "met": "Met", "missed": "Missed", "met_share": "Met %", "median": "Median h",
    "p90": "P90 h", "satisfied": "Satisfied", "not_satisfied": "Not satisfied", "no_answer": "No answer",
    "agent": "Agent", "name": "Name", "assigned": "Assigned", "resolved": "Resolved",
    "chart.monthly": "Tickets per month by type", "chart.categories": "Most frequent categories",
    "chart.sla": "SLA compliance per month", "chart.satisfaction": "Customer satisfaction per month",
    "about.title": "Helpdesk report", "about.scope": "Scope", "about.period": "Period",
    "about.generated": "Generated at", "about.timezone": "Time zone", "about.tickets": "Tickets",
    "about.definitions": "Definitions",
    "def.month": "A ticket belongs to the month it was opened in, in the helpdesk's time zone.",
    "def.first_response": "First response time: business hours from opening to the first answer to the customer.",
    "def.resolution": "Resolution time: business hours from opening to the (last) resolution.",
    "def.calendar": "Both count only the helpdesk's business hours, without its holidays.",
    "def.met": "A deadline is met when the answer (resolution) came at or before it, missed when it came later "
               "or has not come and the deadline has passed; tickets whose deadline is still ahead count as "
               "neither.",
    "def.percentiles": "Medians and 90th percentiles interpolate linearly between ranks.",
    "def.satisfaction": "Satisfaction counts the answers on resolved tickets: satisfied, not satisfied, no answer.",
    "def.open": "Open means new, open or pending now; merged tickets are left out.",
    "state.new": "new", "state.open": "open", "state.pending": "pending", "state.resolved": "resolved",
    "state.closed": "closed", "state.rejected": "rejected",
    "type.request": "request", "type.complaint": "complaint", "type.information": "information",
    "priority.low": "low", "priority.normal": "normal", "priority.high": "high", "priority.urgent": "urgent",
    "source.email": "email", "source.phone": "phone", "source.web": "web", "source.letter": "letter",
    "source.fax": "fax",
    "satisfaction.satisfied": "satisfied", "satisfaction.not-satisfied": "not satisfied",
    # issue 18: actions
    "sheet.actions": "Actions", "action.open": "Open", "action.overdue": "Overdue", "action.done": "Done",
    "action.cancelled": "Cancelled", "action.owner": "Owner", "action.id": "Action", "action.ticket": "Ticket",
    "action.what": "What", "action.source": "Source", "action.due": "Due", "action.status": "Status",
    "action.result": "Result", "action.closed_at": "Closed", "action.improvement": "improvement",
    "def.actions": "Actions: those open at some time in the period (opened by its end, not closed before its "
                   "start); open, overdue (open and past due) and done as of the report's time.",
    # issue 18: ledger
    "sheet.costs": "Costs", "sheet.time": "Time", "sheet.evidence": "Evidence", "col.time_minutes": "Time (min)",
    "cost_lines": "Cost lines", "at": "At", "by": "By", "amount": "Amount", "currency": "Currency",
    "reason": "Reason", "minutes": "Minutes", "hours": "Hours", "step": "Step", "filename": "File name",
    "content_type": "Content type", "size": "Size (bytes)", "sha256": "SHA-256", "attachment": "Attachment",
    "company.none": "(none)",
    "def.ledger": "Costs and time count with their ticket (its month, category and company); costs are summed "
                  "per currency, never across currencies. Evidence: the files of each command mail, by step.",
}

TR: dict[str, str] = {
    "sheet.tickets": "Talepler", "sheet.monthly": "Aylık", "sheet.categories": "En sık kategoriler",
    "sheet.companies": "Firmalar", "sheet.customers": "Müşteriler", "sheet.sla": "SLA",
    "sheet.satisfaction": "Memnuniyet", "sheet.agents": "Temsilciler", "sheet.charts": "Grafikler",
    "sheet.about": "Hakkında",
    "sheet.stages": "Aşamalar", "stage": "Aşama", "stage.now_in": "Şu an içinde", "stage.entered": "Giriş",
    "stage.total_hours": "İçinde geçen iş saati",
    "col.number": "Numara", "col.subject": "Konu", "col.state": "Durum", "col.type": "Tür",
    "col.category": "Kategori", "col.priority": "Öncelik", "col.source": "Kaynak", "col.requester": "Talep eden",
    "col.requester_name": "Talep edenin adı", "col.company": "Firma", "col.assignee": "Atanan",
    "col.group": "Grup", "col.created_at": "Açılış", "col.month": "Ay",
    "col.first_response_due": "İlk yanıt hedefi", "col.first_response_at": "İlk yanıt",
    "col.resolution_due": "Çözüm hedefi", "col.resolution_at": "Çözüm", "col.closed_at": "Kapanış",
    "col.within_contract": "Sözleşme kapsamında", "col.root_cause": "Kök neden", "col.action_plan": "Eylem planı",
    "col.cost": "Maliyet", "col.resolution": "Çözüm açıklaması", "col.satisfaction": "Memnuniyet",
    "col.first_response_hours": "İlk yanıt (mesai saati)", "col.resolution_hours": "Çözüm (mesai saati)",
    "col.first_response_met": "İlk yanıt hedefi tuttu", "col.resolution_met": "Çözüm hedefi tuttu",
    "yes": "Evet", "no": "Hayır", "none": "-", "total": "Toplam", "whole_period": "Tüm dönem",
    "month": "Ay", "type": "Tür", "category": "Kategori", "category.none": "(yok)",
    "rank": "Sıra", "tickets": "Talep", "share": "Pay", "company": "Firma", "customer": "Müşteri",
    "complaints": "Şikâyet", "open": "Açık", "resolution_met": "Çözüm hedefi tutan",
    "resolution_missed": "Çözüm hedefi kaçan", "resolution_met_share": "Çözüm hedefi tutma %",
    "satisfied_share": "Memnun %", "measure": "Ölçüt", "first_response": "İlk yanıt",
    "resolution": "Çözüm", "met": "Tutan", "missed": "Kaçan", "met_share": "Tutma %", "median": "Medyan (sa)",
    "p90": "90. yüzdelik (sa)", "satisfied": "Memnun", "not_satisfied": "Memnun değil", "no_answer": "Yanıt yok",
    "agent": "Temsilci", "name": "Ad", "assigned": "Atanan", "resolved": "Çözülen",
    "chart.monthly": "Aylara ve türlere göre talepler", "chart.categories": "En sık kategoriler",
    "chart.sla": "Aylara göre SLA uyumu", "chart.satisfaction": "Aylara göre müşteri memnuniyeti",
    "about.title": "Yardım masası raporu", "about.scope": "Kapsam", "about.period": "Dönem",
    "about.generated": "Oluşturulma zamanı", "about.timezone": "Saat dilimi", "about.tickets": "Talep sayısı",
    "about.definitions": "Tanımlar",
    "def.month": "Bir talep, yardım masasının saat diliminde açıldığı aya sayılır.",
    "def.first_response": "İlk yanıt süresi: talebin açılışından müşteriye verilen ilk yanıta kadar geçen mesai "
                          "saati.",
    "def.resolution": "Çözüm süresi: talebin açılışından (son) çözüme kadar geçen mesai saati.",
    "def.calendar": "İkisi de yalnızca yardım masasının mesai saatlerini sayar, tatil günlerini saymaz.",
    "def.met": "Yanıt (çözüm) hedef zamanda ya da ondan önce geldiyse hedef tutmuş; daha geç geldiyse ya da "
               "henüz gelmemişken hedef zamanı geçtiyse kaçmış sayılır; hedef zamanı henüz gelmemiş talepler "
               "ikisine de sayılmaz.",
    "def.percentiles": "Medyan ve 90. yüzdelik, sıralı değerler arasında doğrusal ara değerle hesaplanır.",
    "def.satisfaction": "Memnuniyet, çözülen taleplere verilen yanıtları sayar: memnun, memnun değil, yanıt yok.",
    "def.open": "Açık: şu anda yeni, açık ya da beklemede olan talepler; birleştirilen talepler sayılmaz.",
    "state.new": "yeni", "state.open": "açık", "state.pending": "beklemede", "state.resolved": "çözüldü",
    "state.closed": "kapandı", "state.rejected": "reddedildi",
    "type.request": "istek", "type.complaint": "şikâyet", "type.information": "bilgi",
    "priority.low": "düşük", "priority.normal": "normal", "priority.high": "yüksek", "priority.urgent": "acil",
    "source.email": "e-posta", "source.phone": "telefon", "source.web": "web formu", "source.letter": "mektup",
    "source.fax": "faks",
    "satisfaction.satisfied": "memnun", "satisfaction.not-satisfied": "memnun değil",
    # issue 18: actions
    "sheet.actions": "Eylemler", "action.open": "Açık", "action.overdue": "Gecikmiş", "action.done": "Tamamlandı",
    "action.cancelled": "İptal", "action.owner": "Sorumlu", "action.id": "Eylem", "action.ticket": "Talep",
    "action.what": "Ne", "action.source": "Kaynak", "action.due": "Son tarih", "action.status": "Durum",
    "action.result": "Sonuç", "action.closed_at": "Kapanış", "action.improvement": "iyileştirme",
    "def.actions": "Eylemler: dönem içinde bir süre açık olanlar (dönem sonuna kadar açılmış, dönem başından önce "
                   "kapanmamış); açık, gecikmiş (açık ve son tarihi geçmiş) ve tamamlanan sayıları raporun "
                   "oluşturulduğu ana göredir.",
    # issue 18: ledger
    "sheet.costs": "Maliyetler", "sheet.time": "Süre", "sheet.evidence": "Kanıtlar", "col.time_minutes": "Süre (dk)",
    "cost_lines": "Maliyet kalemleri", "at": "Zaman", "by": "Giren", "amount": "Tutar", "currency": "Para birimi",
    "reason": "Gerekçe", "minutes": "Dakika", "hours": "Saat", "step": "Adım", "filename": "Dosya adı",
    "content_type": "Dosya türü", "size": "Boyut (bayt)", "sha256": "SHA-256", "attachment": "Ek",
    "company.none": "(yok)",
    "def.ledger": "Maliyet ve süre talebiyle birlikte sayılır (açıldığı ay, kategorisi ve firması); maliyetler "
                  "para birimi başına toplanır, farklı para birimleri asla toplanmaz. Kanıtlar: her komut "
                  "e-postasının dosyaları, adım adım.",
}

TEXTS: dict[str, dict[str, str]] = {"en": EN, "tr": TR}
DEFINITIONS = ("def.month", "def.first_response", "def.resolution", "def.calendar", "def.met", "def.percentiles",
               "def.satisfaction", "def.open", "def.actions", "def.ledger")


class Words:
    """The texts of one language; a code without a translation (an operator's own type) is shown as it is."""

    def __init__(self, language: str) -> None:
        self.language = language if language in TEXTS else "en"
        self.texts = TEXTS[self.language]

    def __call__(self, key: str) -> str:
        return self.texts[key]

    def code(self, kind: str, value: str) -> str:
        return self.texts.get(f"{kind}.{value}", value) if value else ""
