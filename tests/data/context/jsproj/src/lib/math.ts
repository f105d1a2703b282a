/** Adds two numbers. */
export function add(a: number, b: number): number {
  return a + b;
}

export interface Shape {
  area(): number;
}

export class Circle implements Shape {
  constructor(private r: number) {}
  area(): number {
    return Math.PI * this.r * this.r;
  }
}

export type Id = string;
export enum Color { Red, Green }
