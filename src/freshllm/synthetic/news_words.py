"""Word tables of the synthetic news generator (:mod:`freshllm.synthetic.news`): invented
places, people, organisations and sentence templates per topic, English and German."""

from __future__ import annotations

# --- invented building blocks -------------------------------------------------------

_PLACE_HEADS = ["Lind", "Varn", "Oster", "Brem", "Kal", "Tor", "Mell", "Sand", "Hav", "Grun",
                "Ash", "Wex", "Dun", "Roth", "Fen", "Carr", "Hol", "Mar", "Quen", "Sol"]
_PLACE_TAILS = ["port", "holm", "ford", "bury", "wick", "stad", "mouth", "field", "haven",
                "dale", "berg", "ton", "mere", "gate"]
_FIRST = ["Mara", "Tobin", "Ilse", "Desmond", "Priya", "Oskar", "Lena", "Rafael", "Nadia", "Joran",
          "Elif", "Callum", "Wren", "Soren", "Ada", "Marek", "Yusuf", "Greta", "Idris", "Noor",
          "Fenna", "Anton", "Keziah", "Matteo", "Selin", "Bram"]
_LAST_HEADS = ["Ash", "Brand", "Cole", "Dray", "Eck", "Fair", "Gal", "Hart", "Ives", "Kell",
               "Lorn", "Mead", "Norr", "Pell", "Quill", "Rand", "Stav", "Thorn", "Vail", "Wyn"]
_LAST_TAILS = ["ford", "wick", "er", "ley", "mann", "son", "by", "ridge", "holt", "ow"]
_CO_HEADS = ["Nor", "Vel", "Quar", "Hel", "Zen", "Bry", "Orv", "Tal", "Cor", "Lum", "Sk", "Ter"]
_CO_TAILS = ["tek", "ora", "lux", "via", "gen", "wave", "core", "line", "ex", "ity"]
_CO_KINDS = ["Systems", "Foods", "Logistics", "Materials", "Bank", "Robotics", "Pharma",
             "Energy", "Textiles", "Shipping"]
_WEEKDAYS_EN = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_WEEKDAYS_DE = ["Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"]
_MONTHS_EN = ["January", "February", "March", "April", "May", "June", "July", "August",
              "September", "October", "November", "December"]
_MONTHS_DE = ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August",
              "September", "Oktober", "November", "Dezember"]

# --- English topics ---------------------------------------------------------------------
# Slots: {place} {place2} {person} {person2} {role} {role2} {org} {company} {thing}
# {num} {num2} {pct} {money} {weekday} {month} {year}

_EN_TOPICS: dict[str, dict[str, list[str]]] = {
    "politics": {
        "roles": ["mayor", "council leader", "regional minister", "opposition spokesperson",
                  "party chair", "deputy mayor"],
        "things": ["housing plan", "transport budget", "school reform", "tax proposal",
                   "coastal protection bill", "water charter"],
        "headlines": [
            "{place} council backs {thing} after long debate",
            "{person} pushes {thing} through {place} assembly",
            "Vote on {thing} splits {place} coalition",
            "{place} opposition demands review of {thing}",
            "Regional leaders clash over {place} {thing}",
        ],
        "lead": [
            "The council of {place} approved the {thing} on {weekday} by {num} votes to {num2}, ending weeks of argument.",
            "{person}, the {role} of {place}, won backing for the {thing} late on {weekday} evening.",
            "Members of the {place} assembly spent most of {weekday} debating the {thing} before a narrow vote.",
        ],
        "body": [
            "Supporters argued that the {thing} would cost about {money} over four years.",
            "Critics said the plan had been drafted too quickly and left out smaller towns such as {place2}.",
            "The {role2} {person2} called for an independent audit before any money is spent.",
            "Turnout at the public hearing reached {num} residents, the highest in a decade.",
            "Officials in {place2} said they would watch the outcome closely.",
            "A first report on the {thing} is due in {month}.",
            "The {org} had warned that delays would raise costs by {pct} percent.",
            "Several amendments were withdrawn shortly before the vote.",
            "Local business groups broadly welcomed the decision but asked for clearer timelines.",
            "The measure still needs approval from the regional treasury.",
            "Polling published last week suggested that {pct} percent of voters favoured the change.",
            "Protesters gathered outside the town hall, holding signs about rents and bus fares.",
            "The debate ran for more than {num2} hours, with {num} speakers taking the floor.",
        ],
        "quotes": [
            "\"This is a fair compromise for every district,\" {person} told reporters.",
            "\"We will keep asking hard questions about the cost,\" said {person2}.",
            "\"People in {place2} deserve the same services as everyone else,\" {person2} said.",
        ],
    },
    "business": {
        "roles": ["chief executive", "finance director", "union representative", "economist",
                  "founder", "board chair"],
        "things": ["factory", "warehouse", "research centre", "distribution hub", "flagship store",
                   "assembly line"],
        "headlines": [
            "{company} to open new {thing} in {place}",
            "{company} profits rise {pct} percent on strong demand",
            "Jobs at risk as {company} reviews {place} {thing}",
            "{company} agrees takeover of smaller rival in {place}",
            "{place} {thing} brings {num} jobs, says {company}",
        ],
        "lead": [
            "{company} said on {weekday} it would invest {money} in a new {thing} in {place}.",
            "Shares in {company} moved sharply after the group reported quarterly results on {weekday}.",
            "The {role} of {company}, {person}, announced plans for the {place} {thing} at a briefing on {weekday}.",
        ],
        "body": [
            "The company expects the site to employ around {num} people once it is running.",
            "Revenue rose by {pct} percent compared with the same period last year.",
            "Analysts at the {org} described the outlook as cautious but stable.",
            "Construction is due to start in {month} and take roughly {num2} months.",
            "Suppliers in {place2} are expected to benefit from the new orders.",
            "The group also said it would cut energy use at older sites.",
            "{person2}, a {role2} who follows the sector, said demand had recovered faster than expected.",
            "Staff representatives asked for guarantees on pay and working hours.",
            "The firm has grown from a small workshop into one of the largest employers in the region.",
            "Part of the investment will come from a regional development fund worth {money}.",
            "Competitors have announced similar expansions over the past year.",
            "Costs for raw materials fell by {pct} percent during the quarter.",
        ],
        "quotes": [
            "\"We see real potential in {place},\" said {person}.",
            "\"Our order book is the strongest it has been,\" {person} said.",
            "\"Workers need more than promises,\" said {person2}.",
        ],
    },
    "science": {
        "roles": ["professor", "lead researcher", "astronomer", "biologist", "physicist",
                  "lab director"],
        "things": ["telescope", "seed bank", "ocean sensor network", "particle detector",
                   "soil survey", "glacier study"],
        "headlines": [
            "{place} researchers report surprise result from {thing}",
            "New {thing} gives scientists clearer view of local climate",
            "{org} team publishes first data from {thing}",
            "{person} leads {place} {thing} into second phase",
            "Students help build {thing} near {place}",
        ],
        "lead": [
            "Scientists at the {org} said on {weekday} that their {thing} had produced its first usable measurements.",
            "A team led by {person}, a {role} in {place}, has published early findings from the {thing}.",
            "Researchers working on the {thing} near {place} described an unexpected pattern in their data.",
        ],
        "body": [
            "The team collected more than {num} samples over {num2} weeks.",
            "Early results suggest that temperatures in the area rose by {pct} percent faster than models predicted.",
            "The project received {money} in public funding last year.",
            "Colleagues in {place2} will try to repeat the measurements in {month}.",
            "{person2}, a {role2} who was not involved in the work, called the findings promising.",
            "The instruments were installed by a group of engineers and graduate students.",
            "All data will be released to other researchers after a review period.",
            "The study has been submitted to a journal and is awaiting peer review.",
            "Weather conditions delayed the work by several weeks during the winter.",
            "Local schools have been invited to visit the site during open days.",
            "The researchers said a larger follow-up study would need {num} more sensors.",
            "Similar studies elsewhere have produced mixed results.",
        ],
        "quotes": [
            "\"We did not expect the signal to be this strong,\" said {person}.",
            "\"It is an encouraging first step,\" {person2} said.",
            "\"The real work starts now,\" {person} added.",
        ],
    },
    "sports": {
        "roles": ["coach", "captain", "club president", "striker", "goalkeeper", "team doctor"],
        "things": ["cup final", "league match", "derby", "relay race", "regatta", "semi-final"],
        "headlines": [
            "{place} win {thing} in dramatic finish",
            "{person} inspires {place} to victory in {thing}",
            "{place} and {place2} draw in tense {thing}",
            "Late goal settles {thing} for {place}",
            "{place} coach {person} praises young squad after {thing}",
        ],
        "lead": [
            "{place} beat {place2} by {num2} to {num3} in the {thing} on {weekday} in front of {num} spectators.",
            "A late effort from {person} decided the {thing} between {place} and {place2} on {weekday}.",
            "The {thing} between {place} and {place2} ended level on {weekday} after a hard-fought contest.",
        ],
        "body": [
            "The visitors started brightly and created several early chances.",
            "{person2}, the {role2}, said the squad had trained hard for weeks.",
            "Ticket sales for the match were up {pct} percent on last season.",
            "The result moves {place} up to third place in the table.",
            "Heavy rain made conditions difficult in the second half.",
            "The next match is scheduled for early {month}.",
            "Supporters travelled from {place2} by special trains.",
            "Two players left the field with minor injuries.",
            "The club confirmed that a new stadium roof will be finished by {month}.",
            "Youth players made up nearly half of the starting line-up.",
            "The referee added {num2} minutes of stoppage time.",
            "Both teams have now played {num2} matches this season.",
        ],
        "quotes": [
            "\"The players showed real character today,\" said {person}.",
            "\"We have to be sharper in front of goal,\" {person2} said.",
            "\"The fans carried us through the last minutes,\" {person} said.",
        ],
    },
    "culture": {
        "roles": ["curator", "director", "composer", "festival organiser", "author", "conductor"],
        "things": ["exhibition", "music festival", "film season", "book fair", "theatre premiere",
                   "street art trail"],
        "headlines": [
            "{place} {thing} draws record crowds",
            "{person} brings new {thing} to {place}",
            "{org} announces programme for {thing}",
            "Critics divided over {place} {thing}",
            "{thing} returns to {place} after two-year break",
        ],
        "lead": [
            "The {thing} in {place} opened on {weekday} with {num} visitors on the first day.",
            "{person}, the {role} behind the {thing}, presented the full programme in {place} on {weekday}.",
            "Organisers of the {thing} in {place} said tickets had almost sold out within a week.",
        ],
        "body": [
            "The programme includes work by artists from {place2} and abroad.",
            "Entry is free for students and residents over seventy.",
            "The {org} contributed {money} towards the costs.",
            "Several events will take place in the restored old market hall.",
            "{person2}, a {role2}, described the line-up as bold and varied.",
            "Visitor numbers were {pct} percent higher than at the last edition.",
            "The final weekend will feature an open-air concert by the river.",
            "Local cafes have extended their opening hours for the event.",
            "A children's workshop runs every Saturday until {month}.",
            "Some pieces were created specifically for the venue.",
            "The event has become one of the largest of its kind in the region.",
            "Volunteers from {place2} help run the information desks.",
        ],
        "quotes": [
            "\"We wanted to surprise people,\" said {person}.",
            "\"It is a celebration of the whole region,\" {person2} said.",
            "\"Culture needs space, and {place} has given us that space,\" {person} said.",
        ],
    },
    "environment": {
        "roles": ["ranger", "environmental officer", "hydrologist", "campaigner", "farmer",
                  "forester"],
        "things": ["flood barrier", "wetland restoration", "tree planting scheme", "river clean-up",
                   "wind farm", "wildlife corridor"],
        "headlines": [
            "{place} completes {thing} ahead of spring storms",
            "Volunteers join {thing} along the {place} coast",
            "{org} warns {thing} is behind schedule",
            "{thing} near {place} brings back rare birds",
            "Residents split over planned {thing} in {place}",
        ],
        "lead": [
            "Work on the {thing} near {place} was finished on {weekday}, {num2} weeks earlier than planned.",
            "More than {num} volunteers took part in the {thing} in {place} over the weekend.",
            "The {org} said on {weekday} that the {thing} around {place} needed more funding.",
        ],
        "body": [
            "The project covers an area of about {num} hectares.",
            "Water levels in the river have risen by {pct} percent since the autumn.",
            "{person2}, a {role2}, said the site already attracts more wildlife.",
            "The total cost is estimated at {money}.",
            "Farmers in {place2} have been offered compensation for lost land.",
            "Monitoring will continue until at least {month}.",
            "Schools in the area have adopted sections of the riverbank.",
            "Engineers used local stone to reduce transport emissions.",
            "A similar scheme in {place2} reduced flooding in several streets.",
            "The council plans to publish yearly reports on progress.",
            "Counts of nesting birds rose from {num2} pairs to more than {num3}.",
            "Some residents raised concerns about noise during construction.",
        ],
        "quotes": [
            "\"Nature is recovering faster than we hoped,\" said {person}.",
            "\"We need long-term money, not one-off grants,\" {person2} said.",
            "\"Everyone here has seen what floods can do,\" {person} said.",
        ],
    },
    "transport": {
        "roles": ["transport manager", "rail operator spokesperson", "commuter group chair",
                  "engineer", "harbour master", "planning officer"],
        "things": ["ferry line", "tram extension", "cycle bridge", "night bus network",
                   "railway station", "ring road"],
        "headlines": [
            "New {thing} connects {place} and {place2}",
            "{place} {thing} delayed until {month}",
            "Passengers welcome {place} {thing}",
            "{org} unveils plans for {thing}",
            "{place} commuters face changes as {thing} opens",
        ],
        "lead": [
            "The first passengers used the new {thing} between {place} and {place2} on {weekday}.",
            "The {org} confirmed on {weekday} that the {thing} in {place} will open later than planned.",
            "{person}, the {role} for {place}, presented the final route of the {thing} on {weekday}.",
        ],
        "body": [
            "Journeys between the two towns will be about {num2} minutes shorter.",
            "The project cost {money}, shared between the region and national government.",
            "Around {num} passengers a day are expected in the first year.",
            "{person2}, a {role2}, said ticket prices would stay the same until {month}.",
            "Services will run every fifteen minutes during peak hours.",
            "Residents in {place2} had campaigned for the link for many years.",
            "Engineers had to reinforce the foundations after finding old cellars.",
            "Bicycles can be taken on board free of charge.",
            "Usage of the old route dropped by {pct} percent last year.",
            "A second phase would extend the line towards the airport.",
            "The timetable will be reviewed after six months.",
            "Construction crews worked through the night to meet the deadline.",
        ],
        "quotes": [
            "\"This changes daily life for thousands of people,\" said {person}.",
            "\"We will keep an eye on reliability,\" {person2} said.",
            "\"It was worth the wait,\" one passenger from {place2} said.",
        ],
    },
    "health": {
        "roles": ["hospital director", "nurse", "public health officer", "general practitioner",
                  "paramedic", "health minister"],
        "things": ["children's clinic", "vaccination drive", "emergency ward", "mental health service",
                   "screening programme", "rural health centre"],
        "headlines": [
            "{place} opens new {thing}",
            "{thing} in {place} reaches {num} people",
            "{org} warns of pressure on {place} {thing}",
            "{person} calls for more staff at {thing}",
            "Waiting times fall after {place} {thing} expands",
        ],
        "lead": [
            "A new {thing} opened in {place} on {weekday}, offering care to families across the district.",
            "The {org} said on {weekday} that its {thing} had reached more than {num} residents.",
            "{person}, the {role} in {place}, warned on {weekday} that the {thing} was short of staff.",
        ],
        "body": [
            "Waiting times have fallen by {pct} percent since the start of the year.",
            "The service is funded with {money} from the regional budget.",
            "{person2}, a {role2}, said demand was highest among older residents.",
            "Patients from {place2} will also be able to use the service.",
            "Recruitment of {num2} additional nurses is planned before {month}.",
            "The building includes a pharmacy and a small training centre.",
            "Volunteers help with transport for patients without a car.",
            "Appointments can now be booked online or by phone.",
            "The number of emergency admissions rose slightly over the winter.",
            "Staff received extra training in treating children.",
            "An evaluation of the programme will be published in {month}.",
            "Health officials urged residents to attend regular check-ups.",
        ],
        "quotes": [
            "\"Care should be close to where people live,\" said {person}.",
            "\"Our teams are working at the limit,\" {person2} said.",
            "\"The response from patients has been very positive,\" {person} said.",
        ],
    },
}

# --- German topics (fewer; for the German publisher) -----------------------------------

_DE_TOPICS: dict[str, dict[str, list[str]]] = {
    "politik": {
        "roles": ["Bürgermeisterin", "Bürgermeister", "Landrat", "Fraktionschefin", "Stadträtin"],
        "things": ["Haushaltsplan", "Verkehrsplan", "Schulentwicklungsplan", "Wohnungsbauplan", "Klimaplan"],
        "headlines": [
            "Stadtrat von {place} beschließt {thing}",
            "Streit um {thing} in {place}",
            "{person} verteidigt {thing} für {place}",
            "Opposition in {place} fordert Änderungen am {thing}",
        ],
        "lead": [
            "Der Stadtrat von {place} hat am {weekday} den {thing} mit {num} zu {num2} Stimmen beschlossen.",
            "{person}, {role} von {place}, hat am {weekday} den neuen {thing} vorgestellt.",
            "Nach wochenlanger Debatte hat {place} am {weekday} über den {thing} abgestimmt.",
        ],
        "body": [
            "Die Kosten werden auf rund {money} geschätzt.",
            "Kritiker bemängeln, dass kleinere Gemeinden wie {place2} nicht berücksichtigt wurden.",
            "{person2}, {role2}, forderte eine unabhängige Prüfung der Zahlen.",
            "Nach einer Umfrage unterstützen {pct} Prozent der Bürger das Vorhaben.",
            "Ein erster Bericht soll im {month} vorliegen.",
            "Vor dem Rathaus versammelten sich mehrere hundert Menschen.",
            "Die Sitzung dauerte mehr als {num2} Stunden.",
            "Die Landesregierung muss dem Plan noch zustimmen.",
            "Auch Vertreter aus {place2} verfolgten die Debatte.",
            "Mehrere Änderungsanträge wurden kurz vor der Abstimmung zurückgezogen.",
        ],
        "quotes": [
            "„Das ist ein fairer Kompromiss für alle Stadtteile“, sagte {person}.",
            "„Wir werden die Kosten genau im Blick behalten“, sagte {person2}.",
        ],
    },
    "wirtschaft": {
        "roles": ["Geschäftsführerin", "Vorstandschef", "Betriebsrätin", "Ökonom", "Gründerin"],
        "things": ["Werk", "Logistikzentrum", "Forschungszentrum", "Lager", "Verwaltungsgebäude"],
        "headlines": [
            "{company} baut neues {thing} in {place}",
            "{company} steigert Gewinn um {pct} Prozent",
            "Sorge um Arbeitsplätze im {thing} von {company}",
            "{company} investiert {money} in {place}",
        ],
        "lead": [
            "{company} will nach eigenen Angaben {money} in ein neues {thing} in {place} investieren.",
            "Das Unternehmen {company} hat am {weekday} seine Quartalszahlen vorgelegt.",
            "{person}, {role} von {company}, kündigte am {weekday} Pläne für {place} an.",
        ],
        "body": [
            "Am Standort sollen rund {num} Menschen arbeiten.",
            "Der Umsatz stieg im Vergleich zum Vorjahr um {pct} Prozent.",
            "Die Bauarbeiten sollen im {month} beginnen.",
            "Zulieferer aus {place2} dürften von den Aufträgen profitieren.",
            "{person2}, {role2}, sprach von einer vorsichtig positiven Entwicklung.",
            "Die Beschäftigten fordern Zusagen zu Löhnen und Arbeitszeiten.",
            "Ein Teil der Investition stammt aus einem regionalen Förderprogramm.",
            "Die Energiekosten sanken im Quartal um {pct} Prozent.",
            "Das Unternehmen ist in den vergangenen Jahren stark gewachsen.",
            "Auch Wettbewerber haben ähnliche Pläne angekündigt.",
        ],
        "quotes": [
            "„Wir sehen großes Potenzial in {place}“, sagte {person}.",
            "„Die Beschäftigten brauchen Sicherheit“, sagte {person2}.",
        ],
    },
    "umwelt": {
        "roles": ["Försterin", "Umweltreferent", "Landwirtin", "Hydrologe", "Naturschützerin"],
        "things": ["Hochwasserschutz", "Deichbau", "Waldumbau", "Windpark", "Flussumbau"],
        "headlines": [
            "{place} schließt Arbeiten am {thing} ab",
            "Freiwillige unterstützen {thing} bei {place}",
            "{org} warnt vor Verzögerungen beim {thing}",
            "Seltene Vögel kehren nach {thing} zurück",
        ],
        "lead": [
            "Die Arbeiten am {thing} bei {place} wurden am {weekday} abgeschlossen.",
            "Mehr als {num} Freiwillige haben am Wochenende beim {thing} in {place} geholfen.",
            "Die {org} hat am {weekday} mehr Geld für den {thing} gefordert.",
        ],
        "body": [
            "Das Projekt umfasst eine Fläche von rund {num} Hektar.",
            "Die Gesamtkosten werden auf {money} geschätzt.",
            "{person2}, {role2}, sagte, dass sich bereits mehr Tiere angesiedelt hätten.",
            "Landwirte aus {place2} erhalten eine Entschädigung.",
            "Die Beobachtungen sollen mindestens bis {month} fortgesetzt werden.",
            "Schulklassen haben Patenschaften für einzelne Abschnitte übernommen.",
            "Ein ähnliches Projekt in {place2} hat Überschwemmungen deutlich verringert.",
            "Einige Anwohner beklagten Lärm während der Bauarbeiten.",
            "Die Zahl der Brutpaare stieg von {num2} auf mehr als {num3}.",
            "Die Gemeinde will jedes Jahr über den Fortschritt berichten.",
        ],
        "quotes": [
            "„Die Natur erholt sich schneller als erwartet“, sagte {person}.",
            "„Wir brauchen langfristige Finanzierung“, sagte {person2}.",
        ],
    },
}

_ORG_KINDS_EN = ["Harbour Authority", "Regional Council", "Institute of Applied Science",
                 "Rail Cooperative", "Water Board", "University", "Chamber of Commerce",
                 "Health Trust", "Nature Trust", "Transport Agency"]
_ORG_KINDS_DE = ["Stadtverwaltung", "Hochschule", "Handelskammer", "Naturschutzstiftung",
                 "Verkehrsgesellschaft", "Landesanstalt für Umwelt"]
_RIVERS = ["Vessa", "Tolle", "Marrow", "Kenning", "Aldra", "Brisk", "Orla", "Semmel"]

# Background sentences usable in any English article (fresh numbers per sentence).
_GENERAL_EN = [
    "{place} lies on the {river} river and has a population of about {num}.",
    "The town has changed a great deal since the old shipyard closed.",
    "Many residents commute to {place2}, about {num2} kilometres away.",
    "The {org} has followed the issue closely for several years.",
    "A spokesperson for the {org} said the details were still being finalised.",
    "Similar questions have been raised in {place2} and other towns along the {river}.",
    "According to figures from the {org}, the number has grown by {pct} percent since {year0}.",
    "The last comparable project in the area was completed more than {num2} years ago.",
    "Local newspapers have covered the story extensively.",
    "At a meeting on {weekday}, several residents asked about the timetable.",
    "The district has one of the youngest populations in the region.",
    "Unemployment in {place} stood at {pct2} percent last year.",
    "{person2} has lived in {place} for most of their life and knows the area well.",
    "Officials promised to answer all written questions within {num2} days.",
    "The decision follows a consultation that received {num} responses.",
    "Funding rules require a progress report every six months.",
    "The plans were first presented to the public in {month0}.",
    "Opinions in the town remain divided, according to people who attended the meeting.",
    "Neighbouring {place2} is watching the developments with interest.",
    "The regional government has set aside {money} for similar projects this year.",
    "Older residents remember a similar debate in the {decade}s.",
    "Shops in the town centre reported more visitors than usual in recent weeks.",
    "Most of the work is expected to be done by local companies.",
    "An online information page has been set up by the {org}.",
    "The weather in recent weeks has been unusually mild for the season.",
    "Volunteers have collected signatures both for and against the plans.",
    "The figures will be checked again at the end of {month}.",
    "Independent experts are expected to present their view in {month}.",
]
_GENERAL_DE = [
    "{place} liegt an der {river} und hat rund {num} Einwohner.",
    "Viele Menschen pendeln täglich nach {place2}, das etwa {num2} Kilometer entfernt liegt.",
    "Die {org} beobachtet das Thema seit mehreren Jahren.",
    "Ein Sprecher der {org} sagte, die Einzelheiten würden noch ausgearbeitet.",
    "Ähnliche Fragen stellen sich auch in {place2} und anderen Orten an der {river}.",
    "Nach Angaben der {org} ist die Zahl seit {year0} um {pct} Prozent gestiegen.",
    "Bei einer Versammlung am {weekday} fragten mehrere Anwohner nach dem Zeitplan.",
    "Die Arbeitslosenquote in {place} lag im vergangenen Jahr bei {pct2} Prozent.",
    "Die Pläne wurden im {month0} erstmals öffentlich vorgestellt.",
    "An einer Bürgerbefragung beteiligten sich {num} Menschen.",
    "Die Meinungen in der Stadt gehen weiterhin auseinander.",
    "Die Nachbargemeinde {place2} verfolgt die Entwicklung mit Interesse.",
    "Das Land stellt in diesem Jahr {money} für ähnliche Vorhaben bereit.",
    "Ältere Einwohner erinnern sich an eine ähnliche Debatte in den {decade}er Jahren.",
    "Die meisten Aufträge sollen an Firmen aus der Region gehen.",
    "Die {org} hat eine Informationsseite im Internet eingerichtet.",
    "Unabhängige Fachleute wollen ihre Einschätzung im {month} vorlegen.",
    "Die Zahlen sollen Ende {month} erneut überprüft werden.",
]

_CLOSING_EN = [
    "Further updates are expected in {month}.",
    "The {org} said it would publish more details in the coming weeks.",
    "A public meeting on the subject is planned for {weekday} next week in {place}.",
    "Residents can send questions to the {org} until the end of {month}.",
]
_CLOSING_DE = [
    "Weitere Informationen sollen im {month} folgen.",
    "Eine Bürgerversammlung ist für kommenden {weekday} in {place} geplant.",
    "Die {org} will in den kommenden Wochen weitere Details veröffentlichen.",
]
