//! The words the demo business is made of: names, streets, services, titles.

pub(crate) const FIRST: [&str; 32] = [
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Elijah", "Sophia", "James", "Isabella", "Lucas",
    "Mia", "Mateo", "Amelia", "Benjamin", "Harper", "Levi", "Evelyn", "Henry", "Abigail", "Jack",
    "Emily", "Daniel", "Ella", "Michael", "Camila", "Owen", "Luna", "Samuel", "Sofia", "Diego",
    "Grace", "Wyatt",
];
pub(crate) const LAST: [&str; 32] = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Nguyen",
];
pub(crate) const STREETS: [&str; 10] = [
    "Oak St",
    "Maple Ave",
    "Cedar Ln",
    "Elm Dr",
    "Pecan St",
    "Lamar Blvd",
    "Bluebonnet Way",
    "Mesquite Trl",
    "Riverside Dr",
    "Congress Ave",
];
pub(crate) const CITIES: [(&str, &str); 5] = [
    ("Austin", "787"),
    ("Round Rock", "786"),
    ("Cedar Park", "786"),
    ("Pflugerville", "786"),
    ("Georgetown", "786"),
];
pub(crate) const SERVICES: [(&str, i64); 6] = [
    ("carpet cleaning", 18_900),
    ("upholstery cleaning", 14_900),
    ("tile and grout cleaning", 22_900),
    ("pet odour treatment", 8_900),
    ("rug cleaning", 9_900),
    ("stain protection", 6_900),
];
pub(crate) const OPPORTUNITY_TITLES: [&str; 5] = [
    "Upsell pet-odour treatment",
    "Whole-house carpet package",
    "Quarterly office cleaning contract",
    "Stain protection add-on",
    "Move-out deep clean",
];
pub(crate) const TAGS: [&str; 3] = ["vip", "pet-owner", "commercial"];
