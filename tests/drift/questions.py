"""Questions a reader of the demo corpus asks (on topic), and questions from other domains (off topic)."""

ON_TOPIC = [
    "How many iron rings are on the harbour wall?", "When was the harbour wall built?",
    "What happened in the storm of 1953?", "When does the winter ferry leave?",
    "How often does the ferry run in winter?",
    "Why do you like gulls?", "How long can a gull live?", "How long does your sourdough take?",
    "What flour do you use for bread?", "What does low tide uncover?", "How big is the tidal range at Port Ellery?",
    "Where do you buy tide tables?", "What is the lighthouse like?", "Do gulls steal chips?",
    "What is Port Ellery known for?", "Tell me about the foghorn.", "What do you bake on Sundays?",
    "Is swimming in the sea in winter cold?", "What did you do as a navigator?", "Who built the breakwater?",
]  # fmt: skip
OFF_TOPIC = [
    "How do I configure a Kubernetes ingress?", "What is the best GPU for training transformers?",
    "Explain Python decorators.", "How do I file my tax return?", "What are the rules of cricket?",
    "Recommend a good laptop for gaming.", "How does a blockchain work?", "What is the capital of Mongolia?",
    "How do I fix a segmentation fault in C?", "Which stocks should I buy this year?",
    "How do I reset my router password?", "What is quantum entanglement?", "Write a SQL query joining two tables.",
    "How do vaccines work?", "What is the best pizza topping?", "How to learn Spanish fast?",
    "Explain the offside rule in football.", "What's new in iOS?", "How do electric cars charge?",
    "Debug my React component.",
]  # fmt: skip
