"""TextWorld's adapter: the generic adapter with keywords only (no subclass), and exemplars written over a training game.

TextWorld (:class:`rlem_gym.envs.textworld_env.TextWorldEnv`) lists its admissible commands in
``info["admissible_commands"]`` and states the quest in ``info["objective"]``, so the generic
adapter drives it as it is. What this module adds is what any user would write for their own
env: a one-paragraph description for the prompts, the task field, two static exemplars and a
ReAct example. They were written over games of the ``train`` split (seeds 1 and 2), never over
``dev`` or ``test`` games.
"""

from __future__ import annotations

from rlem_gym.advice import AdviceLine
from rlem_gym.agents.generic_adapter import GenericAdapter, react_turn
from rlem_gym.prompts import Exemplar
from rlem_gym.trajectory import Situation

DESCRIPTION = (
    "I play a text adventure. The task states a quest of a few steps (go somewhere, take, put, "
    "open, close or unlock something). At each turn I read the room and type one of the "
    "available commands, exactly as listed. Finishing the quest gives reward 1."
)

# train game 1: go south, go east, then close the cuboid locker
_QUEST_1 = (
    "Welcome to another exciting session of TextWorld! First of all, venture south. That done, take a "
    "trip east. Then, doublecheck that the cuboid locker in the studio is shut. Got that? Good!"
)
_SPARE_ROOM = (
    "-= Spare Room =-\nYou arrive in a spare room. A normal kind of place.\n\n"
    "You can make out a closed cabinet here.\n\n"
    "You need an unblocked exit? You should try going east. There is an exit to the north. "
    "Don't worry, it is unblocked."
)
_SPARE_ROOM_ACTIONS = ("examine cabinet", "go east", "go north", "inventory", "look", "open cabinet")
_STUDIO = (
    "-= Studio =-\nWell I'll be, you are in the place we're calling the studio.\n\n"
    "You can make out a cuboid locker. The cuboid locker is empty, what a horrible day!\n\n"
    "There is an unguarded exit to the west.\n\nThere is a cuboid keycard on the floor."
)
_STUDIO_ACTIONS = (
    "close cuboid locker",
    "examine cuboid keycard",
    "examine cuboid locker",
    "go west",
    "inventory",
    "look",
    "take cuboid keycard",
)

# train game 2: go south, take the keycard, unlock the box with it
_QUEST_2 = (
    "I hope you're ready to go into rooms and interact with objects, because you've just entered "
    "TextWorld! Here is your task for today. First off, take a trip south. Once you get around to "
    "doing that, retrieve the keycard from the floor of the bedchamber. If you have got the keycard, "
    "look and see that the box is unlocked with the keycard. That's it!"
)
_BEDCHAMBER = (
    "-= Bedchamber =-\nYou are in a bedchamber. A standard one.\n\n"
    "You can see a box. Does this look like anything mentioned in the instructions?\n\n"
    "There is an unblocked exit to the north. There is an unguarded exit to the west.\n\n"
    "There is a keycard on the floor."
)
_BEDCHAMBER_ACTIONS = (
    "drop Advent Calendar",
    "examine box",
    "examine keycard",
    "go north",
    "go west",
    "inventory",
    "look",
    "take keycard",
)

STATIC_EXEMPLARS: tuple[Exemplar, ...] = (
    Exemplar(
        Situation(
            task=_QUEST_1,
            observation=_SPARE_ROOM,
            last_actions=("go south",),
            available_actions=_SPARE_ROOM_ACTIONS,
        ),
        encouraged=(AdviceLine("go east", 1.0, "The quest's next step after going south is to go east."),),
        discouraged=(AdviceLine("open cabinet", 0.0, "The quest does not mention the cabinet."),),
    ),
    Exemplar(
        Situation(
            task=_QUEST_1,
            observation=_STUDIO,
            last_actions=("go south", "go east"),
            available_actions=_STUDIO_ACTIONS,
        ),
        encouraged=(AdviceLine("close cuboid locker", 1.0, "The quest ends with the cuboid locker shut."),),
        discouraged=(AdviceLine("take cuboid keycard", 0.0, "The quest does not ask for the keycard."),),
    ),
)

_WITH_KEYCARD = ("drop keycard", "examine box", "go north", "go west", "look", "unlock box with keycard")

REACT_EXAMPLE = f"""{react_turn(_BEDCHAMBER, _BEDCHAMBER_ACTIONS, _QUEST_2)}
Action: think[I already went south. The quest's next step is to take the keycard from the floor.]
Observation: OK.
Action: take keycard
Observation:
{react_turn("You pick up the keycard from the ground.", _WITH_KEYCARD)}
Action: think[With the keycard, the last step is to unlock the box.]
Observation: OK.
Action: unlock box with keycard
Observation:
You unlock the box. Your score has just gone up by one point. *** The End ***"""


def textworld_adapter() -> GenericAdapter:
    """The generic adapter for ``rlem_gym/TextWorld-v0``, set up by keywords (what ``get_adapter("textworld")`` returns)."""
    return GenericAdapter(
        name="textworld",
        description=DESCRIPTION,
        task_keys=("objective",),
        exemplars=STATIC_EXEMPLARS,
        react_example=REACT_EXAMPLE,
    )
