"""What a customer means by a reply to a "resolved" (or closed) ticket mail: thanks, a question, a complaint.

Why rules and not a library: on PyPI the ready tools are sentiment scorers, and none fits. vaderSentiment (last
release 2020) and TextBlob read English only; VADER rates "Thanks, but it still doesn't work" as positive (+0.24)
and every Turkish or German sentence as neutral (0.0). textblob-de/-fr are unmaintained and know no Turkish;
polyglot, flair, germansentiment and pysentimiento load embeddings or transformer models at run time, which a mail
daemon on a closed network cannot do; talon and mail-parser-reply find quotes and signatures but do not classify.
Sentiment is also the wrong question: "Great, can I also export to PDF?" is friendly and must still reopen the
ticket. What decides is whether anything is asked or reported broken, and in Turkish that hangs on verb suffixes
("çalışıyor" works, "çalışmıyor" does not), which a list of stems and endings handles well.

Why "thanks" is the cautious class: a reply read as thanks leaves the ticket resolved, so a request mistaken for
thanks goes unanswered, while a thank-you read as "other" only costs an agent a glance. So thanks needs every word
of the reply, its sign-off included, to come from a known vocabulary of gratitude, confirmation and courtesy (plus
names after a greeting or a "thanks"); one unknown word ("Thanks, please also add Ayşe") makes it "other".

Why 40 words at most for thanks: the thank-yous in the two reply corpora and in the tests take 1 to 13 words once
the signature is gone; 40 leaves room for a greeting, two polite sentences and a sign-off, while a longer reply
nearly always carries news an agent should read, even when each of its words is a courteous one.

Why complaint wins over question, and question over thanks: "Thanks, but it still fails" is dissatisfaction whatever
the courtesy around it, and "Thanks! Can I also ...?" needs an answer, so the ticket must reopen.

Why the text is folded to ASCII before matching: customers type Turkish without its letters ("calismiyor", "hala")
and in capitals, where Python's lower() turns "İ" into "i" plus a combining dot and "I" into "i" rather than
Turkish "ı". Dropping all diacritics and mapping "ı" to "i" makes "TEŞEKKÜRLER", "tesekkurler" and "Teşekkürler"
one word, at the price of a few harmless collisions (German "schön"/"schon").

Why the signature is found by capitals: names, firms and job titles are written with them and sentences are not, so
of "Thanks," / "John Smith" / "ACME Corp" the last two lines go, while "Thanks!" / "But it still fails" stays whole.
In a reply written all in small letters or all in capitals that cue is gone, so a name under a thank-you there
makes the reply "other". Below a sign-off line ("Thanks,", "Saygılarımla") such lines go up to the end. Without one,
a trailing block goes when it carries contact details, or when it is the last paragraph, one to four lines long, one
of them a name ("Çiğdem Yılmaz", "JOHN SMITH") or a firm with its legal form ("Müşteri A.Ş.", "Müller GmbH"), under
a message short enough to be a thank-you: "Many thanks, it works now!" / "" / "John Smith" / "Acme Corp." is thanks,
while a second paragraph written in sentences ("Yarın yeni ofisimize de modem istiyoruz.") is content.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

Intent = Literal["thanks", "question", "complaint", "other"]

MAX_THANKS_WORDS = 40
# Only the start of a huge reply (a pasted log) is read: it is never thanks, and what it asks or reports is said
# before its 20,000th character; reading on would only cost time.
MAX_CHARS = 20_000

# ---------------------------------------------------------------------------------------------------------------
# Normalisation


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'", "´": "'"})
_LETTERS = str.maketrans({"ı": "i", "æ": "ae", "ø": "o", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th"})

# The e-mail address may only start after a space or a bracket: an open start makes the search quadratic.
_URL = re.compile(r"(?:https?://|www\.)\S+|(?<![^\s<(\[])[^\s@<>()\[\]]+@[^\s@<>()\[\]]+", re.IGNORECASE)
_EMOJI_THANKS = re.compile(r"🙏")
_EMOJI_ACK = re.compile(r"👍|👌|✅|💯|:\+1:|:thumbsup:|:ok_hand:|\(y\)", re.IGNORECASE)
_EMOJI_BAD = re.compile(r"👎|😡|😠|🤬|:-1:|:thumbsdown:", re.IGNORECASE)
# Emoticons, so that ":D" or ":P" do not leave a stray word behind.
_EMOTICON = re.compile(r"(?<!\w)(?:[:;=][-'^o]?[()\[\]dDpP/|*3]+|<3|\^_?\^|xD+)(?!\w)")

# English contractions spelt out, with or without the apostrophe ("doesnt"), so one pattern sees "does not".
_EN_NOT = re.compile(r"\b(do|does|did|is|are|was|were|has|have|had|wo|ca|could|would|should|must|need|ai)n'?t\b")
_EN_CANNOT = re.compile(r"\bcannot\b")
_EN_IS = re.compile(r"\b(it|that|this|there|what|here|problem|issue|error|bug)'s\b")


def _fold(text: str) -> str:
    """Lower-case ASCII-ish text: diacritics dropped, "ı" and "İ" both "i", "ß" "ss", apostrophes straight."""
    text = unicodedata.normalize("NFKC", text.translate(_APOSTROPHES)).casefold()
    text = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    return text.translate(_LETTERS)


# Phrases that name a problem only to say it is gone ("no more errors", "sorun kalmadı", "kein Problem mehr").
# They become the confirmation token _ok_ before any complaint rule looks, so "problem" or a negated Turkish verb
# inside them counts for nothing.
_PROBLEM_EN = r"(?:error\s+messages?|problems?|issues?|errors?|bugs?|troubles?|complaints?|crash(?:es)?|glitch(?:es)?)"
_PROBLEM_TR = r"(?:sorun|problem|hata|sikinti|aksaklik|ariza|sikayet|kesinti)\w*"
_PROBLEM_DE = r"(?:problem|fehler|storung|absturz|absturze)\w*"
_BENIGN = re.compile(
    rf"""
      \b(?:no|not\ any|not\ a|not\ an|never|without)\s+(?:(?:more|further|other|new|additional|single|real)\s+){{0,2}}
          {_PROBLEM_EN}(?:\s+(?:since|anymore|any\ more|so\ far|now|at\ all))*\b
    | \b(?:have|has|had|did|do|does)\s+not\s+(?:had|have|seen|see|got|get|gotten|noticed|notice|experienced|
          encountered|run\ into)\s+(?:(?:any|another|a|the|one|single|more|other|further|new)\s+){{0,2}}
          {_PROBLEM_EN}(?:\s+(?:since|with\ it|anymore|any\ more|again|so\ far|now))*\b
    | \b{_PROBLEM_EN}\s+(?:(?:is|are|has|have|was|seems?\ to\ be|seems?|been|now|all)\s+){{0,3}}
          (?:gone|fixed|solved|resolved|sorted(?:\ out)?|disappeared|cleared|vanished)\b
    | \b(?:fix\w*|solv\w*|resolv\w*|sort\w*|clear\w*|remov\w*|got\ rid\ of)\s+(?:(?:the|this|that|my|our|it|
          these|those|all|every)\s+)?{_PROBLEM_EN}\b
    | \b{_PROBLEM_EN}\s+(?:does|did|has|have)\s+not\s+(?:\w+\s+)?(?:appear\w*|occur\w*|come\ back|return\w*|
          show\w*\ up|happen\w*|recur\w*)(?:\s+(?:again|anymore|any\ more|since))*\b
    | \b(?:hic\w*\s+|herhangi\s+bir\s+|bir\s+)?{_PROBLEM_TR}\s+(?:(?:artik|hic|bir|daha|simdilik|su\ ?an)\s+){{0,2}}
          (?:yok\w*|degil\w*|kalma(?:di|mis|z|yacak)\w*|olm(?:uyor|adi|amis|az)\w*|yasa(?:n)?m(?:adi|iyor|amis)\w*
          |cikm(?:adi|iyor|amis|az)\w*|gorm(?:edi|uyor|emis)\w*|gorunm(?:uyor|edi)\w*|gozukm(?:uyor|edi)\w*
          |alm(?:adi|iyor|amis)\w*|verm(?:edi|iyor|emis|ez)\w*|tekrarla(?:n)?m(?:adi|iyor|amis)\w*)
    | \b{_PROBLEM_TR}\s+(?:(?:de|da|artik|tamamen|bence)\s+)?(?:cozuldu|cozulmus|duzeldi|duzelmis|halloldu|hallolmus
          |gitti|gitmis|giderildi|giderilmis|kalkti|kalkmis|kayboldu|cozdunuz|cozdun|cozmussunuz|hallettiniz|
          halletmissiniz|giderdiniz|duzelttiniz|cozdum|hallettim)\b
    | \b(?:kein\w*|keinerlei|nicht\ mehr)\s+(?:(?:weiteren?|neuen?|anderen?|einzigen?)\s+)?{_PROBLEM_DE}(?:\s+mehr)?\b
    | \b{_PROBLEM_DE}\s+(?:(?:ist|sind|war|wurde|wurden|scheint|jetzt|nun|endlich)\s+){{0,3}}(?:weg|behoben|gelost
          |verschwunden|erledigt|beseitigt)\b
    | \b(?:das|den|die|dieses|meinen|mein|unser)\s+{_PROBLEM_DE}\s+(?:\w+\s+)?(?:gelost|behoben|beseitigt)\b
    | \b{_PROBLEM_DE}\s+(?:tritt|taucht|kommt|erscheint)\s+(?:\w+\s+)?nicht\s+mehr(?:\s+auf)?\b
    | \b(?:plus\ (?:aucun|de)|aucun)\s+(?:probleme|souci|bug|erreur)s?\b
    | \bya\ no\s+(?:hay|tengo|da|sale)\s+(?:\w+\s+)?(?:problemas?|errores?|fallos?)\b
    | \bgeen\s+(?:\w+\s+)?(?:problemen|probleem|fouten|fout|storingen)(?:\s+meer)?\b
    """,
    re.VERBOSE,
)
# Set phrases of thanks or assent whose words mean little alone ("sağ olun", "elinize sağlık", "sounds good").
_THANKS_PHRASE = re.compile(
    r"\bsag\s*ol(?:un|asin|asiniz|sun|sunlar)?\b|\b(?:el(?:ler)?inize|emeg(?:iniz)?e|emeklerinize)\s+saglik\b"
    r"|\bbin\s+tesekkur\w*|\b(?:tekrar|tekrardan|yine|bir\s+kez\s+daha)\s+(?:cok\s+)?tesekkur\w*|\ballah\s+razi\s+olsun\b|\bca(?:n)?\s+not\s+thank\s+(?:you|u)\s+enough\b"
)
_ACK_PHRASE = re.compile(
    r"\b(?:sounds?|klingt|lyder|later|klinkt)\s+(?:very\s+|sehr\s+)?(?:good|great|perfect|fine|gut|super|prima|godt"
    r"|bra|goed)\b|\b(?:all|alles)\s+(?:good|gut|ok|okay|klar|fine|set)\b|\bgot\s+it\b|\bwill\s+do\b"
    r"|\bgerek\s+(?:yok|kalmadi)\b|\bpas\s+de\s+souci\b|\bde\s+acuerdo\b|\bd'accord\b"
    r"|\bcould\s+not\s+be\s+happier\b|\b(?:i|we)\s+do\s+not\s+need\s+anything\s+(?:else|more)\b|\bno\s+need\b"
    # "you can close the ticket": the customer confirms the resolution
    r"|\b(?:you|u)\s+(?:can|may)\s+(?:now\s+)?close\s+(?:the|this|my)\s+(?:ticket|case|request|issue)\b"
    r"|\b(?:bileti|talebi|kaydi|cagriyi)\s+(?:artik\s+)?kapat(?:abilirsiniz|abilirsin|iniz|in)\b"
    r"|\b(?:sie|ihr|du)\s+(?:konnen|konnt|kannst|durfen)\s+(?:das|den|die)\s+(?:ticket|fall|vorgang|anfrage)\s+"
    r"(?:jetzt\s+|gerne\s+|nun\s+)?(?:schliessen|zumachen)\b"
)


# A condition is no report: "If it breaks again I'll write", "Ich melde mich, falls es nicht klappt", "If that
# fails, the tunnel is not working". A sentence that opens with "if" is hypothetical as a whole unless it says
# "still" or "again" ("If I restart it, it still fails"). Turkish conditionals ("çalışmazsa") are left out by
# _is_complaint. Mail text is hard-wrapped, so a clause may run on over a single line break.
_CONDITIONAL = re.compile(
    r"""
      (?:^|(?<=[.!?;:\n]))\s*if\b(?!(?:[^.!?;\n]|\n(?!\s*\n))*\b(?:still|again)\b)(?:[^.!?;\n]|\n(?!\s*\n))*
    | \b(?:if|in\ case|unless|should)\s[^,.!?;:\n]*,?\s*(?:i|we)(?:\s+will|\s*'ll|\s+ll|\s+shall)\b[^.!?;:\n]*
    | \b(?:i|we)(?:\s+will|\s*'ll|\s+ll|\s+shall)\s[^.!?;:\n]*?\b(?:if|in\ case|when|should)\b[^.!?;:\n]*
    | \b(?:if|in\ case|unless|wenn|falls|sofern|eger)\b(?:[^,.!?;:\n]|\n(?!\s*\n))*
    | \b\w+(?:sa|se)\s+(?:\w+\s+){0,3}?(?:yazarim|yazariz|bildiririm|bildiririz|donerim|doneriz|haber\ veririm|
        haber\ veririz|ararim|arariz|ulasirim|ulasiriz)\b
    """,
    re.VERBOSE,
)


def _prepare(text: str) -> str:
    """Folded text with emoji, contractions and the phrases above turned into plain tokens."""
    text = _URL.sub(" ", text)
    text = _EMOJI_THANKS.sub(" _thx_ ", text)
    text = _EMOJI_ACK.sub(" _ack_ ", text)
    text = _EMOJI_BAD.sub(" _bad_ ", text)
    text = _EMOTICON.sub(" ", text)
    text = _fold(text)
    text = _EN_NOT.sub(r"\1 not", text)
    text = _EN_CANNOT.sub("can not", text)
    text = _EN_IS.sub(r"\1 is", text)
    text = _CONDITIONAL.sub(" ", text)
    text = _BENIGN.sub(" _ok_ ", text)
    text = _THANKS_PHRASE.sub(" _thx_ ", text)
    return _ACK_PHRASE.sub(" _ack_ ", text)


# ---------------------------------------------------------------------------------------------------------------
# Complaints: the problem is not solved, or the customer is unhappy. Patterns run on _prepare()'d text.

_COMPLAINT = re.compile(
    r"""
    _bad_
    # --- English
    | \b(?:not|never|no\ longer)\s+(?:(?!need|have|hesitate|only|just|even|sure|bad|expect|know|mind|realiz)\w+\s+)
        {0,3}?(?:work\w*|fix\w*|solv\w*|resolv\w*|sort\w*|help\w*|load\w*|open\w*|start\w*|connect\w*|sync\w*|send\w*|
        receiv\w*|print\w*|log(?:ged|ging)?\ ?in|sign\w*\ in|run\w*|function\w*|chang\w*|happy|satisfied|pleased|
        ok|okay|right|correct|better|possible|able|available|accessible|reachable|respond\w*|show\w*|display\w*|
        appear\w*|sav\w*|download\w*|upload\w*|install\w*|updat\w*|boot\w*|arriv\w*|come\ through|go\ through|
        difference|impressed|acceptable)\b
    | \bstill\s+(?:(?:not(?!\ (?:sure|certain))|broken|fail\w*|crash\w*|down|wrong|missing|stuck|waiting|unable|slow|
        freez\w*|hang\w*|the\ same|same|no|nothing|an?\ (?:problem|issue|error))\b
        | (?:hav\w*|get\w*|see\w*|experienc\w*|receiv\w*|run\w*\ into)\s+(?:\w+\s+){0,2}?
          (?:problems?|issues?|errors?|bugs?|trouble|crash\w*|same|messages?|warnings?)\b)
    | \b(?:happen\w*|broke\w*|fail\w*|crash\w*|stopped|stuck|down|wrong|froze|freez\w*|same\ \w+|errors?|problems?|
        issues?)\s+(?:\w+\s+){0,2}?again\b
    | \bagain\s+(?:broken|failing|failed|crash\w*|down|not|the\ same|same)\b
    | \b(?:problem|issue|error|bug|crash|it|this)s?\s+(?:is|are|was|has|have|came|comes|come)\s+(?:been\s+)?back\b
    | \b(?:problem|issue|error|bug|crash)s?\s+(?:\w+\s+){0,3}?(?:persist\w*|remain\w*|continu\w*|recur\w*|
        reappear\w*|return\w*|reoccur\w*|is\ still|are\ still)\b
    | \b(?:unsatisfied|dissatisfied|unhappy|disappoint\w*|frustrat\w*|unacceptable|terrible|horrible|awful|useless|
        ridiculous|worst|annoy\w*|angry|upset|fed\ up|waste\ of\ (?:my\ |our\ )?time|rubbish|garbage|broken|
        unable\ to|fail|fails|failed|failing|failure|crash|crashes|crashed|crashing)\b
    | \b(?:is|are|was|were|got|gets|keeps?|kept|went|goes|it)\s+(?:even\s+)?(?:broken|broke|failing|crashing|down|
        wrong|worse|stuck|missing)\b
    | \b(?:same|identical)\s+(?:\w+\s+)?(?:problem|issue|error|bug|message|behaviou?r|result)s?\b
    | \bnothing\s+(?:has\s+|have\s+)?(?:changed|worked|works|helped|helps|happens|happened)\b
    | \bno\s+(?:change|difference|improvement|luck|success)\b
    | \bre-?open\w*\b
    | \b(?:but|however|though|ama|ancak|fakat|yalniz|aber|jedoch|allerdings|leider|mais|pero|maar)\b[^.!?\n]{0,120}?
        \b(?:still|hala|halen|immer\ noch|noch\ immer|toujours|todavia|aun|nog\ steeds)\b
    | \bwhy\s+(?:was|is|did|has|have)\s+(?:\w+\s+){0,3}?(?:closed|resolved)\b
    | \bshould\s+not\s+have\s+been\s+(?:closed|resolved)\b
    # --- Turkish (folded): what the negated-verb rule below does not catch
    | \bmemnun\s+(?:\w+\s+)?(?:degil\w*|kalma\w*|olma(?:di|dim|dik|yacag)\w*)
    | \bmemnuniyetsiz\w*
    | \b(?:hala|halen|yine|gene|tekrar|yeniden)\s+(?:\w+\s+){0,2}?(?:ayni|sorun\w*|problem\w*|hata\w*|bozu\w*|
        coktu|cokuyor|cokmus|devam\w*|donuyor|takili\w*|yavas\w*|var)\b
    | \b(?:sorun|problem|hata|sikinti|ariza)\w*\s+(?:\w+\s+){0,2}?(?:devam|suruyor|geri\ geldi|tekrarla\w*|
        tekrar\ etti|yine|hala|halen|tekrar)\b
    | \bayni\s+(?:sorun|problem|hata|sey|sikinti)\w*
    | \bbozul(?:du|uyor|mus|dum|abiliyor)\w*|\bbozuk\w*
    | \bfark\s+(?:etmedi|etmiyor|yok|olmadi)\b|\bdegisen\s+(?:bir\s+)?(?:sey|hicbir\s+sey)\s+yok\b
    | \bhicbir\s+sey\s+degismedi\b
    | \bkabul\s+etm(?:iyor|edi|emis)\w*
    | \b(?:duzgun|dogru|normal|iyi|cozulmus|duzelmis|aktif|calisir)\s+degil\w*
    | \b(?:berbat|rezalet|rezil|sacma|vasat|bezdim|biktim|skandal)\w*
    # --- German (folded)
    | \b(?:funktionier\w*|geht|gehen|ging|klappt\w*|lauft|laufen|lief|startet|offnet|ladt|druckt|sendet|
        synchronisier\w*)\s+(?:\w+\s+){0,3}?(?:nicht|nich|net|nie|kaum)\b
    | \bnicht\s+(?:mehr\s+)?(?:\w+\s+){0,2}?(?:funktionier\w*|gehen|geht|klappt|zufrieden|gelost|behoben|repariert|
        erledigt|moglich|erreichbar|laden|offnen|starten|angekommen|erhalten|richtig|korrekt|besser)\b
    | \b(?:immer\ noch|noch\ immer|nach\ wie\ vor|weiterhin|schon\ wieder|wieder|erneut)\s+(?:\w+\s+){0,3}?
        (?:nicht|kaputt|defekt|fehler\w*|problem\w*|dasselbe|derselbe|dieselbe|gleich\w*|absturz\w*|sturzt|
        hangt|haengt|falsch)\b
    | \b(?:problem|fehler)\w*\s+(?:\w+\s+){0,2}?(?:besteht|bestehen|bleibt|tritt|ist)\s+(?:\w+\s+)?(?:weiterhin|
        immer\ noch|noch\ immer|wieder|erneut)\b
    | \b(?:problem|fehler)\w*\s+(?:\w+\s+){0,2}?(?:noch|wieder)\s+(?:da|vorhanden|aufgetreten)\b
    | \b(?:keine|keinerlei)\s+(?:besserung|anderung|veranderung|verbesserung|wirkung|reaktion)\b
    | \b(?:unzufrieden|enttauscht|enttauschend|argerlich|frustrier\w*|inakzeptabel|unverschamt|katastroph\w*|
        schrecklich|furchtbar|kaputt|defekt)\b
    # --- French, Spanish, Dutch (the common ones)
    | \b(?:fonctionne|marche)\s+(?:toujours\s+|plus\s+|encore\s+)?pas\b|\btoujours\s+(?:pas|le\ meme)\b
    | \bpas\s+(?:satisfait|content)e?\b|\bmecontent\w*
    | \bno\s+(?:me\s+|nos\s+|le\s+)?(?:funciona|sirve|anda|estoy\ satisfech[oa]|estoy\ content[oa]|se\ resolvio)\b
    | \bsigue\s+(?:sin|fallando|igual|el\ mismo)\b
    | \b(?:werkt|doet\ het)\s+(?:\w+\s+){0,2}?niet\b|\bniet\s+(?:tevreden|opgelost)\b|\bnog\s+steeds\s+niet\b
    """,
    re.VERBOSE,
)

# Turkish negates a verb inside the word: stem + (abilitive "-(y)a/e") + "-mıyor/-madı/-mamış/-maz..." —
# "çalışmıyor", "düzelmedi", "olmadı", "açılmıyor", "giremiyorum", "yükleyemedim". The stems are the verbs a
# customer uses about something not working; positive forms ("çalışıyor", "düzeldi", "oldu") never match.
_TR_STEMS = (
    "calis", "calistir", "duzel", "duzelt", "duzeltil", "ol", "acil", "ac", "gel", "git", "gid", "gonder", "gonderil",
    "yukle", "yuklen", "baglan", "bagla", "gir", "giril", "gor", "goster", "gorun", "gozuk", "kaydet", "kayded",
    "kaydedil", "coz", "cozul", "hallol", "hallet", "halled", "halledil", "degis", "degistir", "guncelle",
    "guncellen", "yap", "yapil", "bul", "basla", "baslat", "indir", "indiril", "ulas", "eris", "yara", "gec",
    "iyiles", "onar", "onaril", "gider", "gideril", "yuru", "tut", "cik", "al", "ver", "yenile", "yenilen", "oynat",
    "sifirla", "sifirlan", "dus", "duzgun", "islen", "isle",
)
_TR_NEGATED = re.compile(
    r"\b(?:" + "|".join(sorted(_TR_STEMS, key=len, reverse=True)) + r")(?:y?[ae])?"
    r"(?:m[iu]yor|ma[dz]|me[dz]|mami[sy]|memi[sy]|mayacak|meyecek|(?<=[ae])m[ae]m\b)\w*"
)


_TR_CONDITIONAL_ENDING = re.compile(r"(?:sa|se)(?:m|n|k|niz|nuz)?$")


def _is_complaint(prepared: str) -> bool:
    if _COMPLAINT.search(prepared):
        return True
    return any(not _TR_CONDITIONAL_ENDING.search(m.group()) for m in _TR_NEGATED.finditer(prepared))


# ---------------------------------------------------------------------------------------------------------------
# Questions

_QMARK = re.compile(r"[?？¿]")
_CLAUSE_SPLIT = re.compile(r"[.!;:,()\n\"]+|\s[-–—]+\s")
_LEADING_FILLER = re.compile(
    r"^(?:(?:and|but|also|so|ok|okay|well|oh|hi|hello|hey|thanks|thank\ you|btw|by\ the\ way|just|now|one\ more\ thing|"
    r"aber|und|oder|danke|ama|ve|fakat|ancak|peki|tesekkurler|bir\ de|yalniz|simdi|_thx_|_ack_|_ok_)\s+)+"
)
_QUESTION_START = re.compile(
    r"""^(?:
      (?:can|could|would|will|should|shall|do|does|did|is|are|was|were|may|might|am)\s+(?:not\s+)?
          (?:i|you|we|it|this|that|there|they|he|she|someone|somebody|anyone|anybody|u|ya|the|my|our|your)\b
    | (?:have|has)\s+(?:i|you|we|it|this|that|there|they|he|she|someone|somebody|anyone|anybody|u)\b
    | how\s+(?:do|does|did|can|could|should|would|will|is|are|was|to|long|much|many|often|come)\b
    | what\s+(?:is|are|was|were|do|does|did|should|can|could|would|will|about|if|happens|happened|else|time|kind|
          version|now|next)\b
    | why\b(?!\s+not\b)
    | (?:when|where)\s+(?:will|can|could|would|is|are|do|does|did|should|shall)\b
    | any\s+(?:chance|idea|ideas|update|updates|news|eta|way)\b
    | is\s+there\b
    # German: verb first, or a W-word with a verb
    | (?:kann|kannst|konnen|konnt|konnte|konnten|wurden|wurde|wurdest|ist|sind|gibt|habe|haben|hast|hat|soll|
          sollte|sollten|muss|musste|mussen|darf|durfen|wird|werden|bekomme|bekommen|geht|funktioniert)\s+
          (?:ich|sie|man|es|das|du|ihr|wir|er|mir|uns|ihnen|dies|der|die|den)\b
    | (?:wie|was|warum|wieso|weshalb|wann|wo|woher|wohin|welche\w*|wer)\s+(?!immer\b|gesagt\b|besprochen\b|
          vereinbart\b|erwartet\b|gewunscht\b|versprochen\b|fur\ ein)\w+
    # French
    | (?:est-ce\ que|est\ ce\ que|pouvez-vous|pourriez-vous|comment|pourquoi|quand)\b
    )""",
    re.VERBOSE,
)
_QUESTION_PHRASE = re.compile(
    r"""
      \b(?:i|we)\s+(?:was\s+|am\s+|were\s+|are\s+)?wonder(?:ing)?\b
    | \b(?:i|we)\s+(?:would|'d|d)\s+like\s+to\s+know\b
    | \b(?:a|one|another|some|few|my|quick|last|follow[-\ ]up|further|additional|more|small|little)\s+
        (?:(?:\w+|follow[-\ ]up)\s+)?questions?\b
    | \bquestions?\s*:
    | \b(?:let\ me\ know|tell\ me|advise)\s+(?:how|what|why|when|where|whether|which)\b
    | \bis\ there\ (?:a|any)\ way\b
    | \b(?:bir|baska\ bir|son\ bir|kucuk\ bir|ufak\ bir)?\s*sorum\s+(?:var|olacak)\b
    | \bne\ (?:yapmam|yapmaliyim|yapmaliyiz|yapacagim|yapabilirim)\b
    | \b(?:nasil(?!\s+tesekkur)|neden(?!\s+ol)|niye|nicin|hangi\w*|nerede|nereden|nereye|ne\ zaman|kim|acaba)\b
    | \b(?:noch\ )?eine\s+(?:weitere\s+|kurze\s+|letzte\s+)?frage\b|\bich\ frage\ mich\b
    | \b(?:une\ (?:autre\ )?question|una\ (?:otra\ )?pregunta|een\ (?:andere\ )?vraag)\b
    """,
    re.VERBOSE,
)
# The Turkish particle is a word of its own ("çalışıyor mu", "yapabilir misiniz"). The bare "mi" is also
# Spanish "my", so alone it counts only at the end of a clause or in a text with letters only Turkish has.
_TR_PARTICLE = re.compile(
    r"\bm[iu](?:y[iu]m|s[iu]n|s[iu]n[iu]z|y[iu]z|d[iu]r|yd[iu]|yd[iu]n[iu]z|ym[iu]s|s[iu]n[iu]z)\b|\bmu\b"
)
_RAW_MI = re.compile(r"(?<!\w)[mM]ı(?!\w)|(?<!\w)[mM][iIİ](?=\s*(?:[.!,;:)\n]|$))")
_RAW_BARE_MI = re.compile(r"(?<!\w)[mM][iIİ](?!\w)")
_TURKISH_ONLY_LETTERS = re.compile(r"[ğışİĞŞ]")


def _is_question(content: str, prepared: str) -> bool:
    if _QMARK.search(_URL.sub(" ", content)):
        return True
    if _QUESTION_PHRASE.search(prepared) or _TR_PARTICLE.search(prepared) or _RAW_MI.search(content):
        return True
    if _RAW_BARE_MI.search(content) and _TURKISH_ONLY_LETTERS.search(content):
        return True
    for clause in _CLAUSE_SPLIT.split(prepared):
        if _QUESTION_START.match(_LEADING_FILLER.sub("", clause.strip())):
            return True
    return False


# ---------------------------------------------------------------------------------------------------------------
# Thanks: the vocabulary (folded forms). Markers carry the meaning; the rest may stand around them.

_GRATITUDE = _words("""
    thanks thank thx thnx thanx thnks thks tks tnx ty tysm tyvm tq thankyou thanku thankful grateful appreciate
    appreciated appreciating appreciation cheers kudos _thx_
    tsk tskler tsklr tesekuler eyvallah eyv minnettarim minnettariz
    danke dank dankeschon danken bedanke bedanken
    merci remercie remercions remerciements
    gracias agradezco agradecido agradecida agradecemos
    bedankt dankje dankjewel dankuwel
    grazie obrigado obrigada tak tack takk
""")
_CONFIRMATION = _words("""
    works working worked work fixed solved resolved sorted done functioning functional _ok_
    calisti calisiyor calisiyordur calisiyo calismis calisir calistirdim calistirabildim calistirdik duzeldi duzelmis
    cozuldu cozulmus halloldu hallolmus hallettim hallettik hallettiniz halletmissiniz cozdum cozduk cozmussunuz
    oldu olmus tamamlandi basardim basardik acildi acilmis acabildim girebildim gitti geldi duzelttim duzelttiniz
    funktioniert funktionierts funktionieren funktionierte klappt klappts geklappt geht gehts lauft laufts gelost
    behoben erledigt repariert passt
    fonctionne marche resolu regle
    funciona funciono resuelto solucionado arreglado
    werkt opgelost gelukt
    virker fungerer fungerar funkar lost
""")
_ACKNOWLEDGEMENT = _words("""
    ok okay okey oke okej okie oki kk perfect great awesome excellent super superb brilliant fantastic wonderful
    amazing lovely cool splendid terrific outstanding noted understood gotcha _ack_
    tamam tamamdir tmm harika mukemmel muhtesem sahane anladim anlasildi
    perfekt prima toll klasse spitze wunderbar bestens einwandfrei top genial
    parfait impeccable nickel formidable magnifique
    perfecto excelente estupendo vale
    geweldig uitstekend bra
""")
_MARKERS = _GRATITUDE | _CONFIRMATION | _ACKNOWLEDGEMENT
_COURTESY = _words("""
    i me my we us our you your yours u ya guys team folks everyone everybody all it its this that these those there
    here is are was were be been being am has have had so very much many lot lots a an the and for with of to on in
    at from by as just really truly indeed totally fully completely finally now again already today once well fine
    good nice day weekend week evening morning afternoon kind kindly best regards regard warm warmest wishes
    greetings hi hello hey dear yes yeah yep yup sure seems seem looks look like everything perfectly smoothly
    properly correctly expected oh wow sir madam mr mrs ms dr help helping helped helpful support assistance service
    quick quickly fast prompt promptly swift reply replies response answer answers fix fixes solution time effort
    efforts patience hard job did trick helps fixing solving sorting resolving looking into always since update
    restart patch version s ll ve re d m up running
    what how result results happy glad pleased satisfied delighted memnun memnunum memnunuz kaldim kaldik mutlu
    mutluyum froh content contente contento
    contenta blij tevreden out side end too both enjoy take care bye goodbye greatly highly massively sincerely
    yours truly br rgds
    cok cokcok gercekten cidden size sizlere sana sizin senin herkese hepinize icin hizli hizlica hemen artik simdi
    suan su an sorunsuz gayet guzel iyi gunler calismalar aksamlar haftasonlari hafta sonlari merhaba selam
    selamlar sayin bey hanim hocam abi abla beyefendi hanimefendi ederim ederiz ediyorum ediyoruz ve de da her sey
    herseyi hersey evet kolay gelsin elinize ellerinize emeginize emeklerinize saglik is bu
    sekilde boyle dogru duzgun olarak bence en oldugunuz oldugun olunuz saygilarimla saygilar
    sevgiler sevgilerimle gorusmek uzere simdilik kardesim iyi yazarim yazariz bildiririm bildiririz donerim
    haber veririm
    vielen vielmals herzlichen herzlich herzliche lieben besten tausend recht schon sehr fur ihre ihr ihnen eure
    euch deine dein dir dich du sie wir uns mir mich ich es das die der den dem jetzt nun wieder alles hilfe
    unterstutzung schnelle schnell rasche rasch antwort antworten losung bearbeitung muhe gut ja hallo guten tag
    morgen abend geehrte geehrter geehrtes liebe lieber herr frau gruss grusse grussen mit freundlichen freundliche
    viele beste schones schonen wochenende nochmals nochmal mal auch und ist sind hat haben war bin zufrieden total
    wie immer was ein eine wirklich ganz einfach richtig ebenfalls mfg lg vg melde melden geduld einsatz bemuhungen
    beaucoup bien tout toute tous ca c est bonne journee soiree pour votre vos ton ta aide cordialement bonjour le
    la les du des mille infiniment vous je nous tres rapide reponse salutations madame monsieur encore maintenant
    muchas muchisimas mil por su sus tu ayuda ya todo bien saludos hola el un una buen dia ahora muy rapida rapido
    respuesta le lo te les mi problema esta funcionando
    hartelijk heel erg hartstikke wel voor het je jullie uw hulp snelle snel reactie alles goed nu weer met
    vriendelijke groet groeten hoi hallo
    mange tusind tusen mycket din dit jeres hjaelpen hjalpen hjelpen det lyder godt hej hei mail meget sa med venlig
    hilsen vanlig halsning halsningar mvh kh
""")
_VOCABULARY = _MARKERS | _COURTESY
# Turkish nouns take case and possessive endings ("yardımlarınız için", "ilginize", "teşekkürlerimle"); these
# prefixes stand for all their forms, as long as the ending does not negate ("-mıyor", "-sız").
_TR_PREFIXES = ("tesekkur", "yardim", "ilgi", "destek", "emeg", "emek", "cevap", "cevab", "donus", "minnettar",
                "saygi", "caba", "sabr", "sabir", "alaka")
_TR_MARKER_PREFIXES = ("tesekkur", "minnettar")
_TR_NEGATIVE_ENDING = re.compile(r"m[aeiu](?:yor|d|z|m|s)|s[iu]z")

# Words after which a capitalised word is a name ("Thanks John", "Merhaba Ahmet Bey", "Danke Herr Müller").
_NAME_LEADS = _GRATITUDE | _words("""
    hi hello hey dear hallo hej hei hola bonjour merhaba selam sayin liebe lieber geehrte geehrter herr frau mr mrs
    ms dr sir madam beste hoi ciao you u ederim ederiz dank regards cheers best greetings gruss grusse grussen
    saygilarimla sevgiler mvh hilsen groeten groet saludos cordialement
""")
_WORD = re.compile(r"\w+")
_RAW_WORD = re.compile(r"[^\W_]+")


def _is_turkish_form(word: str, prefixes: tuple[str, ...]) -> bool:
    for prefix in prefixes:
        if word.startswith(prefix) and len(word) - len(prefix) <= 10:
            return not _TR_NEGATIVE_ENDING.search(word[len(prefix):])
    return False


def _is_name(word: str) -> bool:
    """Written like a name: a capital, then small letters ("John", "Ayşe", "McDonald"), or an initial ("J")."""
    return word[0].isupper() and (len(word) == 1 or any(c.islower() for c in word[1:]))


def _names(content: str) -> set[str]:
    """Folded names: up to three name-like words after a greeting, a thanks or a title in the same sentence."""
    names: set[str] = set()
    for line in content.split("\n"):
        lead = False  # the previous word opens a name: a greeting, a thanks, a title, or a name itself
        run = 0
        previous = ""
        previous_end = 0
        for match in _RAW_WORD.finditer(line):
            word, folded = match.group(), _fold(match.group())
            gap = line[previous_end : match.start()].strip()
            after_initial = run > 0 and len(previous) == 1 and gap == "."  # "J. Smith"
            sentence_break = bool(re.search(r"[.!?;:]", gap)) and not after_initial
            known = folded in _VOCABULARY or folded in _SIGNAL_WORDS
            if lead and not sentence_break and not known and _is_name(word) and run < 3:
                names.add(folded)
                run += 1
            else:
                lead, run = folded in _NAME_LEADS, 0
            previous, previous_end = word, match.end()
    return names


# A plea for help is made of courteous words too.
_PLEA = re.compile(r"\bhelp\s+(?:me|us)\b|\b(?:bana|bize)\s+yardim\w*|\bhelfen\s+sie\b|\bhilf\s+mir\b|\baidez-moi\b"
                   r"|\bayud(?:ame|enme|anos)\b")


def _is_thanks(content: str, prepared: str) -> bool:
    if len(_RAW_WORD.findall(content)) > MAX_THANKS_WORDS or _PLEA.search(prepared):
        return False
    words = _WORD.findall(prepared)
    if not any(w in _MARKERS or _is_turkish_form(w, _TR_MARKER_PREFIXES) for w in words):
        return False
    names = _names(content)
    return all(w in _VOCABULARY or w in names or _is_turkish_form(w, _TR_PREFIXES) for w in words)


# ---------------------------------------------------------------------------------------------------------------
# Sign-off and signature: what follows the new text is no content.

_SIGNATURE_DELIMITER = re.compile(r"--\s?|_{5,}")
_MOBILE_FOOTER = re.compile(
    r"""(?:sent\ from\ (?:my|a|an)\ .{1,50}|sent\ from\ (?:mail|outlook|yahoo\ mail|gmail)\ for\ .{1,30}
      | get\ outlook\ for\ .{1,40}|von\ meinem\ .{1,40}\ gesendet|gesendet\ (?:von|mit)\ (?:meinem\ )?.{1,40}
      | .{1,40}'?(?:dan|den|tan|ten)\ gonderildi|ios\ icin\ outlook.{0,40}|android\ icin\ outlook.{0,40}
      | envoye\ de\ mon\ .{1,40}|enviado\ desde\ mi\ .{1,40}|verzonden\ (?:vanaf|met)\ mijn\ .{1,40}
      | sendt\ fra\ min\ .{1,40}|skickat\ fran\ min\ .{1,40})""",
    re.VERBOSE,
)
# Disclaimers and "external mail" banners that mail gateways add; not the customer's words.
_DISCLAIMER = re.compile(
    r"""^\W*(?:disclaimer\W*$|confidentiality\ notice|external\ (?:e-?mail|sender)
      |(?:caution|warning|attention)\W+(?:this\ (?:e-?mail|message)|external|do\ not\ click)
      |this\ (?:e-?mail|message|communication)\ (?:and\ any|is\ confidential|(?:may\ contain|contains)\ (?:confidential|
          privileged)|originated|is\ intended)
      |the\ information\ (?:contained\ )?in\ this\ (?:e-?mail|message|communication)
      |bu\ (?:e-?posta|elektronik\ posta|ileti|mesaj)\ (?:ve|gizli|icerdigi|sadece)|yasal\ uyari|gizlilik\ uyarisi
      |diese\ (?:e-?mail|nachricht)\ (?:enthalt|ist|kann)|haftungsausschluss|vertraulichkeitshinweis)\b""",
    re.VERBOSE,
)
# Contact details of a signature: addresses, links, phone numbers and their labels ("Tel:", "M:").
_CONTACT = re.compile(
    r"\S+@\S+|https?://\S+|www\.\S+|\+?\d[\d\s()./-]{6,}\d|\b(?:tel|phone|fax|mobile|mob|cell|gsm|telefon|mobil|"
    r"adres|address|adresse|web|e-?mail)\b\s*[.:]|(?<!\w)[mtpf]\s*:",
    re.IGNORECASE,
)
# An address line: a street word ("Cad.", "Sok.", "Mah.", "Street", "Str.") makes "No: 12" a house number, not "no".
_STREET = re.compile(
    r"\b(?:cad|caddesi|cd|sok|sokak|sokagi|sk|mah|mahallesi|mh|bulvari|blv|bulv|street|st|road|rd|avenue|ave|str|"
    r"strasse|gasse|weg|platz|allee)\b"
)
_HOUSE_NUMBER = re.compile(r"\b(?:no|nr)\s*[.:]\s*(?=\d)", re.IGNORECASE)
# The legal form that marks a line as a firm (folded): "A.Ş.", "Ltd. Şti.", "GmbH", "Inc.", "Corp.", "S.A.", "B.V.".
_LEGAL_FORM = re.compile(
    r"(?<!\w)(?:a\.\s?s|ltd|sti|gmbh|ag|kg|ohg|inc|corp|co|llc|llp|plc|s\.\s?a|s\.\s?l|s\.\s?r\.\s?l|srl|b\.\s?v|"
    r"n\.\s?v|sarl|sas|s\.\s?p\.\s?a|spa|oy|oyj|ab|aps|pty|pvt|limited|incorporated|corporation)\.?(?!\w)"
)
_CONNECTORS = _words("of and the for at in de der die das und van von da di du la le del y ve bin zu fur & i e")
_CLOSING_WORDS = _words("""
    regards best kind warm warmest many thanks thank you cheers sincerely yours truly respectfully br rgds
    greetings thx ty again advance in and all the very much wishes care take
    saygilarimla saygilar saygi iyi calismalar gunler kolay gelsin tesekkurler selamlar sevgiler sevgilerimle
    simdiden tesekkur ederim ederiz cok
    mit freundlichen grussen gruss grusse viele beste liebe lg vg mfg herzliche herzlichen danke vielen dank
    vorab im voraus schone schonen
    cordialement bien a vous salutations bonne journee merci beaucoup
    saludos atentamente un cordial saludo gracias muchas
    met vriendelijke groet groeten mvg hartelijke bedankt
    med venlig hilsen vanlig halsning halsningar mvh kh pozdrawiam z powazaniem hilsen
""")
_SIGNAL_WORDS = _MARKERS | _words("""
    not no never nicht kein keine degil yok pas niet nothing still again please bitte lutfen but aber ama
""")


def _tokens(line: str) -> list[str]:
    return _RAW_WORD.findall(line)


def _is_capitalised(word: str) -> bool:
    return word[0].isupper() or word[0].isdigit() or any(c.isupper() for c in word)


def _is_closing(line: str) -> bool:
    """A sign-off line: "Thanks,", "Best regards, John", "Saygılarımla", "Mit freundlichen Grüßen"."""
    words = _tokens(line)
    if not words or len(words) > 8 or "?" in line:
        return False
    while len(words) > 1 and _is_capitalised(words[-1]) and _fold(words[-1]) not in _CLOSING_WORDS:
        words.pop()  # the name after the closing words
    return all(_fold(w) in _CLOSING_WORDS for w in words)


def _is_signature_line(line: str, shouting: bool = False) -> bool:
    """A line of a signature block: a name, a company or job title, an address, a phone number, a mobile footer.

    Names and firms are known by their capitals, so in a text written all in capitals only contact details count.
    """
    stripped = line.strip()
    if "?" in stripped:
        return False
    if _MOBILE_FOOTER.fullmatch(_fold(stripped)):
        return True
    rest = _CONTACT.sub(" ", stripped)  # what stands around the contact details must look like a name or firm
    if _STREET.search(_fold(rest)):
        rest = _HOUSE_NUMBER.sub(" ", rest)
    words = _tokens(rest)
    if not words:
        return rest != stripped
    if shouting or len(words) > 8 or _is_complaint(_prepare(rest)):
        return False
    if any(_fold(w) in _SIGNAL_WORDS for w in words):
        return False
    lower = [w for w in words if not _is_capitalised(w)]
    return len(lower) < len(words) and all(_fold(w) in _CONNECTORS for w in lower)


def _is_bare_name(line: str, capitals: bool = False) -> bool:
    """A name alone on a line ("John", "-Abhishek Kona", "/John", "Ahmet Y."); with capitals, "JOHN SMITH" too."""
    words = _tokens(line)
    if not 1 <= len(words) <= 3 or "?" in line:
        return False
    if any(_fold(w) in _VOCABULARY or _fold(w) in _SIGNAL_WORDS for w in words) or _is_complaint(_prepare(line)):
        return False
    return all(w[0].isupper() and (capitals or len(w) <= 2 or not w.isupper()) for w in words)


def _is_signature_block(lines: list[str], block: list[int], shouting: bool) -> bool:
    """One to four signature lines, of which one names the sender or the firm ("Çiğdem Yılmaz", "Müller GmbH")."""
    if not 1 <= len(block) <= 4 or not all(_is_signature_line(lines[j], shouting) for j in block):
        return False
    return any(_is_bare_name(lines[j].lstrip("-–—/~ "), capitals=True) or _LEGAL_FORM.search(_fold(lines[j]))
               for j in block)


def _drop_disclaimers(lines: list[str]) -> list[str]:
    """Drop a banner paragraph before the text, and everything from a disclaimer after it."""
    out: list[str] = []
    skipping = False
    for line in lines:
        if not line.strip():
            skipping = False
            out.append(line)
            continue
        if skipping:
            continue
        if _DISCLAIMER.match(_fold(line)):
            if any(kept.strip() for kept in out):
                break
            skipping = True
            continue
        out.append(line)
    return out


def _drop_signature(lines: list[str]) -> list[str]:
    nonblank = [i for i, line in enumerate(lines) if line.strip()]
    shouting = not any(c.islower() for line in lines for c in line)
    # After the last sign-off line, a block of signature lines goes; the sign-off itself stays (its "thanks" counts).
    for i in reversed(nonblank):
        if _is_closing(lines[i]):
            if all(_is_signature_line(lines[j], shouting) for j in nonblank if j > i):
                return lines[: i + 1]
            break
    # Without a sign-off: a trailing block with contact details goes whole, else only a bare name on the last line.
    start = len(nonblank)
    while start > 0 and _is_signature_line(lines[nonblank[start - 1]], shouting):
        start -= 1
    block = nonblank[start:]
    if any(_CONTACT.search(lines[j]) or _MOBILE_FOOTER.fullmatch(_fold(lines[j].strip())) for j in block):
        return lines[: block[0]]
    # A last paragraph that is a signature block (name, firm, job title, address) below a short message goes whole.
    last = len(nonblank) - 1
    while last > 0 and nonblank[last - 1] == nonblank[last] - 1:
        last -= 1
    paragraph, above = nonblank[last:], nonblank[:last]
    words_above = sum(len(_tokens(lines[j])) for j in above)
    if above and words_above <= MAX_THANKS_WORDS and _is_signature_block(lines, paragraph, shouting):
        return lines[: paragraph[0]]
    if len(nonblank) > 1 and _is_bare_name(lines[nonblank[-1]].lstrip("-–—/~ ")):
        return lines[: nonblank[-1]]
    return lines


def _content(text: str) -> str:
    """The customer's own words: sign-off kept, signature, mobile footer and disclaimers dropped."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    for i, line in enumerate(lines):
        if _SIGNATURE_DELIMITER.fullmatch(line.strip()):
            lines = lines[:i]
            break
    lines = _drop_disclaimers(lines)
    lines = [line for line in lines if not _MOBILE_FOOTER.fullmatch(_fold(line.strip()))]
    return "\n".join(_drop_signature(lines)).strip()


# ---------------------------------------------------------------------------------------------------------------


def classify_reply(text: str) -> Intent:
    """What a reply to a resolved/closed ticket says; ``text`` is the new text, quotes already stripped.

    "complaint" (not solved, or unhappy) wins over "question", which wins over "thanks" (short gratitude or
    confirmation that it works, nothing else); everything else, an empty text included, is "other".
    """
    content = _content(text[:MAX_CHARS])
    if not _RAW_WORD.search(content) and not _EMOJI_ACK.search(content) and not _EMOJI_THANKS.search(content):
        return "complaint" if _EMOJI_BAD.search(content) else "other"
    prepared = _prepare(content)
    if _is_complaint(prepared):
        return "complaint"
    if _is_question(content, prepared):
        return "question"
    if _is_thanks(content, prepared):
        return "thanks"
    return "other"
