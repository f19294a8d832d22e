"""Hand-written comments for the abuse model's unit tests: insults aimed at the reader and
harmless comments (intensifiers, self-deprecation, third parties). Never training data."""

INSULTS = [
    "you are an idiot",
    "you're such a moron, go away",
    "shut up you stupid loser",
    "ur a pathetic clown",
    "get a clue, moron.",
    "your comments are worthless, idiot",
    "you are a liar and a coward",
    "nobody cares what you think, idiot",
    "go away troll, you are pathetic",
    "you stupid moron, read the article",
    "what a clown you are",
    "you are dumb as a rock",
]
HARMLESS = [
    "I am such an idiot, forgot my keys",
    "he is an idiot but the film is fine",
    "this bug is killing me",
    "thanks, you are right about the numbers",
    "damn good game last night",
    "I hate mondays",
    "the referee was stupid yesterday",
    "see you at the meeting tomorrow",
    "great article, thanks for writing it",
    "the council voted against the plan again",
    "my dog ate the remote, what a day",
    "you make a good point about taxes",
    "what time does the game start",
    "the new trailer looks amazing",
    "I agree with you on the budget",
    "it rained all week here",
]
