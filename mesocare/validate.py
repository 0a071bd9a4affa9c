"""`make validate`: Rasa's own data validation, failing on every warning but one kind.

Rasa warns that a response "is not used in any story or rule" when it is sent by other means: by a
custom action (`dispatcher.utter_message(response=...)`), by the red-flag policy, by a form asking for
its slot (`utter_ask_<slot>`) or by Rasa's default fallback (`utter_default`). Such a warning is accepted
only if that use is real (the name is quoted in the code, or the slot is a form's required slot); every
other warning fails the run, as with `rasa data validate --fail-on-warnings`.
"""

from __future__ import annotations

import re
import sys
import warnings

from mesocare.settings import ROOT

UNUSED = re.compile(r"The utterance '([^']+)' is not used in any story or rule\.")
UNUSED_INTENT = re.compile(r"The intent '([^']+)' is not used in any story or rule\.")


CODE_THAT_SENDS_RESPONSES = [*sorted((ROOT / "actions").glob("*.py")), ROOT / "mesocare/safety/policy.py",
                             ROOT / "mesocare/input_guard.py"]


def responses_sent_outside_stories(domain: dict) -> set[str]:
    """Responses sent by actions or the red-flag policy, form questions, and Rasa's fallback."""
    names = {"utter_default"}
    for path in CODE_THAT_SENDS_RESPONSES:
        names |= set(re.findall(r"[\"'](utter_[a-z0-9_]+)[\"']", path.read_text()))
    for form in (domain.get("forms") or {}).values():
        names |= {f"utter_ask_{slot}" for slot in (form or {}).get("required_slots", [])}
    from mesocare.safety.rules import load_asked_topics

    asked = load_asked_topics()  # the red-flag policy's warning lines for risk questions
    return names | set(asked["warnings"].values()) | {asked["answer_for_misread_report"]}


def intents_handled_outside_stories() -> set[str]:
    """Intents the red-flag policy answers (the "This is happening to me now" quick reply)."""
    from mesocare.levels import HAPPENING_NOW_INTENT

    return {HAPPENING_NOW_INTENT}


def run_validation() -> tuple[bool, list[str]]:
    """Run Rasa's validator over the project; return (ok, warning messages)."""
    from rasa.cli.utils import _validate_domain, _validate_nlu, _validate_story_structure
    from rasa.shared.importers.importer import TrainingDataImporter
    from rasa.validator import Validator

    importer = TrainingDataImporter.load_from_config(
        str(ROOT / "config.yml"), str(ROOT / "domain.yml"), [str(ROOT / "data")]
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        validator = Validator.from_importer(importer)
        ok = _validate_domain(validator)
        ok = _validate_nlu(validator, fail_on_warnings=False) and ok
        ok = _validate_story_structure(validator, None, fail_on_warnings=False) and ok
    return ok, [str(w.message) for w in caught if not _expected(w)]


def _expected(w: warnings.WarningMessage) -> bool:
    """Python deprecations and the warnings Rasa itself lists as expected are not about our data."""
    from rasa.utils.common import EXPECTED_WARNINGS

    if issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning)):
        return True
    message = str(w.message)
    return any(issubclass(w.category, cat) and re.match(pat, message) for cat, pat in EXPECTED_WARNINGS)


def main() -> int:
    import yaml

    ok, messages = run_validation()
    sent = responses_sent_outside_stories(yaml.safe_load((ROOT / "domain.yml").read_text()))
    bad = []
    for message in messages:
        match = UNUSED.search(message)
        if match and match.group(1) in sent:
            continue
        intent = UNUSED_INTENT.search(message)
        if intent and intent.group(1) in intents_handled_outside_stories():
            continue
        bad.append(message)
    for message in bad:
        print(f"WARNING: {message}")
    accepted = len(messages) - len(bad)
    print(f"validate: {len(bad)} warnings, {accepted} accepted (responses sent outside stories); "
          f"errors: {'none' if ok else 'yes'}")
    return 0 if ok and not bad else 1


if __name__ == "__main__":
    sys.exit(main())
