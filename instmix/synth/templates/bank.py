"""instmix's own phrasings for instruction-augmented documents (written for this project).

Every list is a plain tuple of strings; the renderer picks from them with a seeded RNG.
"""

# Lines that may introduce the raw text.
OPENERS = (
    "Read the passage below.", "Here is a text to study:", "Consider the following excerpt.",
    "Passage:", "Go through this text carefully.", "The following is a piece of writing.",
    "Text:", "Below is an article.", "Study this material:",
    "Take a look at the text that follows.", "Source text:",
    "Here is some background reading.", "Reading:", "Look over this document.",
    "Use the text below for the questions that come after it.", "Document:",
    "The material for this exercise:", "Excerpt:", "Read this, then answer.", "Context:",
    "An extract to work with:", "Some reading first.",
)

# Lines between the text and its questions.
LEAD_INS = (
    "Answer the questions below using the text.",
    "Now respond to these questions about the passage.", "Questions about the text above:",
    "Use the passage to answer the following.", "Based on what you just read, answer these.",
    "Check your understanding:", "Some questions on this material:",
    "Respond to each question with information from the text.", "Try these questions.",
    "Here are questions and answers about the reading.", "Test yourself on the passage:",
    "The questions below refer to the excerpt.", "Work through the following questions.",
    "Reply to the prompts that follow, drawing on the text.",
    "Let's see what the text tells us.", "Comprehension questions:",
    "What does the passage say? Answer below.", "Questions and answers:",
    "A few things to answer from the reading:", "Show what you learned from the text.",
)

# (question prefix, answer prefix); a pair is "{qp}{question}{joiner}{ap}{answer}".
QA_STYLES = (
    ("Question: ", "Answer: "), ("Q: ", "A: "), ("Q. ", "A. "), ("Query: ", "Response: "),
    ("Prompt: ", "Reply: "), ("Problem: ", "Solution: "), ("Input: ", "Output: "),
    ("Instruction: ", "Response: "), ("Task: ", "Result: "), ("", ""), ("", "Answer: "),
    ("Question - ", "Answer - "), ("[Question] ", "[Answer] "), ("QUESTION: ", "ANSWER: "),
    ("Q> ", "A> "), ("The question: ", "The answer: "), ("Your question: ", "My answer: "),
    ("Exercise: ", "Answer key: "), ("Quiz: ", "Solution: "), ("Asked: ", "Answered: "),
)

# Speaker labels for dialog layouts: (asker, answerer).
SPEAKERS = (
    ("User", "Assistant"), ("Student", "Teacher"), ("Reader", "Expert"), ("Human", "AI"),
    ("Person A", "Person B"), ("Interviewer", "Guest"), ("Customer", "Agent"),
    ("Learner", "Tutor"), ("Asker", "Answerer"), ("Client", "Advisor"), ("Pupil", "Mentor"),
    ("Visitor", "Guide"), ("Reader", "Librarian"), ("Q", "A"),
)

DIALOG_INTROS = (
    "A conversation about the text above:", "Two people discuss the passage.", "Dialogue:",
    "Here is a chat about this text.", "An exchange about what was just read:",
    "They talk the text over.",
)

# The asker's opening words when the text is part of the first turn.
NEXT_TURN_INTROS = (
    "Please read this and answer my questions.", "I have a text for you:", "Look at this:",
    "Here's something I read.", "Can you help me with this passage?",
    "Read the following, please.",
)

# Numbered layouts: (question number, answer number); "{n}" is the position.
NUMBERINGS = (
    ("{n}. ", "{n}. "), ("{n}) ", "{n}) "), ("({n}) ", "({n}) "), ("Q{n}: ", "A{n}: "),
    ("#{n} ", "#{n} "), ("[{n}] ", "[{n}] "), ("Question {n}: ", "Answer {n}: "),
)
QUESTION_HEADERS = ("Questions:", "Answer these:", "Quiz:", "Things to find out:",
                    "Exercises:", "Try to answer:")
ANSWER_HEADERS = ("Answers:", "Answer key:", "Solutions:", "Responses:", "Key:",
                  "Here are the answers:")

# Inverted layout: questions, then the text, then the answers.
INVERTED_INTROS = (
    "Keep these questions in mind while you read:", "Questions first, text second:",
    "Before reading, look at these questions.", "Read the text with these questions in mind:",
    "You will answer the following after the passage:", "First the questions:",
)
INVERTED_BRIDGES = ("The text:", "Now the passage:", "Here is the text:", "The reading:",
                    "Passage follows.", "And the material itself:")

# Inline few-shot: worked examples, then the last question.
FEWSHOT_INTROS = ("Here are some worked examples:", "Examples:", "Solved examples first:",
                  "Some questions with their answers:", "A few answered questions:")
FEWSHOT_LASTS = ("Now this one:", "Your turn:", "Next question:", "Try the last one:",
                 "And finally:", "One more:")

# Multiple choice.
OPTION_HEADERS = ("Options:", "Choices:", "Pick one:", "Possible answers:", "Select from:",
                  "Candidates:", "Answer choices:", "Which is it?", "Alternatives:")
LABEL_SETS = ("upper", "lower", "digit", "roman")
LABEL_FORMATS = ("{}.", "{})", "({})", "[{}]", "{}:")
# "{bare}" is the label alone ("B"), "{label}" as listed ("(B)"), "{option}" its text.
ANSWER_FORMS = ("{bare}", "{label} {option}", "{label} {option}", "{option} ({bare})",
                "The correct choice is {bare}.")
UNANSWERABLE = (
    "There is not enough information to tell.", "The text does not say.",
    "None of the listed choices.", "It cannot be determined from the passage.",
    "No answer is supported by the text.", "Impossible to know from what is given.",
    "The passage leaves this open.", "Not stated.",
)
# Lower-case fragments that mark an option as "cannot be answered".
UNANSWERABLE_MARKERS = (
    "not enough information", "none of the above", "cannot be determined",
    "can't be determined", "unanswerable", "not possible to tell", "cannot tell",
    "can't tell", "not enough info", "not mentioned", "no answer",
)

# Chain of thought.
COT_TRIGGERS = (
    "Think it through step by step.", "Reason it out before answering.",
    "Show your reasoning, then answer.", "Work through it one step at a time.",
    "Explain your thinking first.", "Walk through the logic before giving the answer.",
    "Answer with reasoning.", "Break the problem down, then answer.",
    "Give the steps that lead to the answer.", "Let's reason carefully.",
)
COT_CONCLUSIONS = (
    "So the answer is {x}.", "Final answer: {x}", "Hence, {x}.", "That makes the answer {x}.",
    "The result: {x}", "In the end: {x}.", "Answer: {x}", "Thus the answer is {x}.",
    "Putting it together: {x}.",
)

# Layouts and how often each is drawn (documented in docs/synthesis.md).
LAYOUT_WEIGHTS = {
    "classic": 0.82, "inverted": 0.05, "dialog": 0.05, "numbered": 0.03,
    "fewshot": 0.03, "next_turn": 0.02,
}
