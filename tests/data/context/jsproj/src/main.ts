import { add, Circle as Round } from "./lib/math";
import * as widgets from "./widgets";
const legacy = require("./widgets/index.js");

const c = new Round(2);
const total = add(c.area(), 1);
const w = widgets.makeWidget("x");
